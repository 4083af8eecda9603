//! `agent-host audit verify FILE`: checks an audit log's hash chain.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use super::fail;

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Check every record's hash and its link to the record before; report the first broken one
    Verify {
        /// The audit log (JSON lines)
        file: PathBuf,
    },
}

pub fn audit(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify { file } => {
            let reader = match std::fs::File::open(&file) {
                Ok(f) => BufReader::new(f),
                Err(e) => return fail(format!("{}: {e}", file.display())),
            };
            match agent_host::audit::verify(reader) {
                Ok(v) => {
                    println!(
                        "{}: {} records, hash chain intact; last hash {}",
                        file.display(),
                        v.records,
                        v.last_hash
                    );
                    if v.seals > 0 {
                        println!(
                            "{} torn last line(s) sealed by a restarted host: see the audit.sealed records",
                            v.seals
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(brk) => {
                    println!("{}: hash chain broken at {brk}", file.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}
