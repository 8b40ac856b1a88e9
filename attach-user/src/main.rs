use std::process::ExitCode;

use attach::{
    Engine, Error,
    cli::{Cli, Command, Output},
    kinds::AddRequest,
    output,
};
use clap::Parser;
use serde_json::json;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                cli.output,
                Error::system(format!("cannot start the runtime: {e}")),
            );
        }
    };
    match rt.block_on(run(&cli)) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(cli.output, e),
    }
}

fn fail(fmt: Output, e: Error) -> ExitCode {
    match fmt {
        Output::Json => println!(
            "{}",
            json!({"error": {"kind": e.kind.name(), "message": e.message}})
        ),
        Output::Text => eprintln!("attach: {}", e.message),
    }
    ExitCode::from(e.kind.exit_code() as u8)
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serializable")
}

async fn run(cli: &Cli) -> attach::Result<String> {
    let json = cli.output == Output::Json;
    let engine = Engine::new()?;
    Ok(match &cli.command {
        Command::Add(kind) => {
            let req = AddRequest::from(kind.clone());
            let rec = engine.add(&req).await?;
            for w in &rec.extra.warnings {
                eprintln!("attach: warning: {w}");
            }
            if json {
                to_json(&rec)
            } else {
                output::attachments(std::slice::from_ref(&rec))
            }
        }
        Command::Del(args) => {
            let (netns, ifname) = (&args.netns, args.ifname.as_deref());
            let gone = engine.del(netns, ifname).await?;
            for w in gone.iter().flat_map(|r| &r.extra.warnings) {
                eprintln!("attach: warning: {w}");
            }
            match (json, gone) {
                (true, g) => to_json(&json!({"detached": g})),
                (false, Some(r)) => format!("detached {} from {}", output::what(&r), r.netns),
                (false, None) => match ifname {
                    Some(i) => format!("nothing attached as {i} in {netns}"),
                    None => format!("nothing attached in {netns}"),
                },
            }
        }
        Command::Check(args) => {
            let (netns, ifname) = (&args.netns, args.ifname.as_deref());
            let rec = engine.get(netns, ifname)?.ok_or_else(|| {
                Error::not_found(match ifname {
                    Some(i) => format!("nothing attached as {i} in {netns}"),
                    None => format!("nothing attached in {netns}"),
                })
            })?;
            engine.check(&rec).await?;
            if json {
                to_json(&json!({"ok": true, "attachment": rec}))
            } else {
                format!("{} in {netns}: ok", output::what(&rec))
            }
        }
        Command::List => {
            let list = engine.list()?;
            if json {
                to_json(&list)
            } else {
                output::attachments(&list)
            }
        }
        Command::Stats => {
            let s = engine.stats()?;
            if json { to_json(&s) } else { output::stats(&s) }
        }
        Command::Reset => {
            let removed = engine.reset().await?;
            if json {
                to_json(&json!({"detached": removed}))
            } else {
                format!(
                    "detached {} attachment(s); pins and state removed",
                    removed.len()
                )
            }
        }
    })
}
