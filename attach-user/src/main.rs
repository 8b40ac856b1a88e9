use std::{io::Write as _, process::ExitCode};

use attach::{
    Engine, Error, agent,
    cli::{Cli, Command, Output},
    op,
};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    attach::logging::init(cli.log_format);
    // Made from the command line alone: no engine, no privileges, no agent.
    match &cli.command {
        Command::Completions { shell } => {
            return finish(&cli, Ok(attach::docgen::completions(*shell)));
        }
        Command::Man { command } => return finish(&cli, attach::docgen::man(command)),
        _ => {}
    }
    if let Err(e) = attach::privileges::check(cli.command.name()) {
        return finish(&cli, Err(e));
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return finish(
                &cli,
                Err(Error::system(format!("cannot start the runtime: {e}"))),
            );
        }
    };
    let result = rt.block_on(async {
        if let Some(args) = cli.agent_args() {
            return agent::run(args).await.map(|()| String::new());
        }
        if let Command::Bench(args) = &cli.command {
            // Works in namespaces of its own, never on this node's state.
            return attach::bench::run(args, cli.output == Output::Json);
        }
        if let Command::Monitor(args) = &cli.command {
            let engine = Engine::new()?;
            return attach::monitor::run(&engine, args, cli.output == Output::Json)
                .await
                .map(|()| String::new());
        }
        let Some(op) = cli.command.op() else {
            unreachable!("every other command is an operation")
        };
        // One operation, then exit: see `short_lived_heap`.
        attach::sys::short_lived_heap();
        // A running agent serves the node's operations; without one, the
        // CLI does the work itself.
        let mut engine = None;
        agent::client::run(&op, cli.output, &mut engine, false)
            .await
            .map(warn)
    });
    finish(&cli, result)
}

/// Writes a command's warnings on stderr; returns its output.
fn warn(done: op::Done) -> String {
    for w in &done.warnings {
        eprintln!("attach: warning: {w}");
    }
    done.stdout
}

fn finish(cli: &Cli, result: attach::Result<String>) -> ExitCode {
    match result {
        Ok(out) => {
            // A reader that stops early (`attach list | head`) is not an
            // error of ours.
            if !out.is_empty() {
                let _ = writeln!(std::io::stdout(), "{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let (out, err) = op::render_error(cli.output, &e);
            if !out.is_empty() {
                let _ = writeln!(std::io::stdout(), "{out}");
            }
            if !err.is_empty() {
                eprintln!("{err}");
            }
            ExitCode::from(e.kind.exit_code() as u8)
        }
    }
}
