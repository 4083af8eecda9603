//! The hello agent's logic as a native program (task input as the first
//! argument, output on stdout): the one-process-per-task baseline.

use agent_host_guest::Task;

fn main() -> std::process::ExitCode {
    let task = Task {
        id: "bench".into(),
        input: std::env::args().nth(1).unwrap_or_default(),
        metadata: vec![],
    };
    match hello::greet(&task) {
        Ok((name, output)) => {
            eprintln!("hello agent handled {} ({name})", task.id);
            println!("{}", output.data);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}
