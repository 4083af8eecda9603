//! The `agent-host` binary: run, check and precompile agents under their manifests.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
