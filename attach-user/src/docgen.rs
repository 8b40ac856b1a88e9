//! Shell completions and manual pages, made from the command line's own
//! definition (so they always match it).

use clap::CommandFactory;

use crate::{
    cli::{Cli, CompletionShell},
    error::{Error, Result},
};

/// The completion script of `attach` for `shell`.
pub fn completions(shell: CompletionShell) -> String {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "attach", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The manual page (roff) of `attach`, or of its command `path` (`["add",
/// "macvlan"]`: the page `attach-add-macvlan(1)`).
pub fn man(path: &[String]) -> Result<String> {
    let mut cmd = Cli::command();
    // Defines the deferred subcommands' arguments and their full names.
    cmd.build();
    let mut page = cmd.clone();
    for (i, name) in path.iter().enumerate() {
        page = page.find_subcommand(name).cloned().ok_or_else(|| {
            let parent = std::iter::once("attach")
                .chain(path[..i].iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            Error::invalid(format!(
                "{parent} has no command {name:?}: its commands are in {}",
                if i == 0 {
                    "attach man".to_owned()
                } else {
                    format!("attach man {}", path[..i].join(" "))
                }
            ))
        })?;
    }
    let title = std::iter::once("attach")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-");
    // Once per process: the name clap keeps must be 'static.
    let page = page.name(&*Box::leak(title.into_boxed_str()));
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(|e| Error::system(format!("writing the manual page: {e}")))?;
    Ok(String::from_utf8_lossy(&out).trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_completes_the_commands() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let s = completions(shell);
            for word in ["add", "macvlan", "--parent", "reconcile"] {
                assert!(s.contains(word), "{shell:?}: no {word}");
            }
        }
    }

    #[test]
    fn pages_of_the_tool_and_its_commands() {
        let top = man(&[]).unwrap();
        assert!(top.starts_with(".ie"), "{top}");
        assert!(top.contains("attach add macvlan"), "{top}");
        let add = man(&["add".into(), "macvlan".into()]).unwrap();
        assert!(add.contains("attach\\-add\\-macvlan"), "{add}");
        assert!(add.contains("parent"), "{add}");
        let e = man(&["add".into(), "teleport".into()]).unwrap_err();
        assert!(e.message.contains("teleport"), "{e}");
    }
}
