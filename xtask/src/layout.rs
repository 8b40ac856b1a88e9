//! The shape of the code, checked: files as rooms, `use` paths as arrows.
//! No circle of imports between files of a crate, no arrow from the
//! library into a front end (the CLI, the agent, the CNI plugin, the
//! benchmark), and no source file past its concern (line count).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};

/// Longest source file, in lines.
pub const MAX_LINES: usize = 700;

/// attach-user's front ends: modules the library must not import.
const FRONT_ENDS: [&str; 6] = ["cli", "docgen", "cni", "agent", "bench", "main"];

/// A module of a crate: its path (`["kinds", "macvlan"]`) and source.
struct Module {
    path: Vec<String>,
    text: String,
}

pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for (krate, src, front_ends) in [
        ("attach-user", "attach-user/src", &FRONT_ENDS[..]),
        ("attach-ebpf", "attach-ebpf/src", &[][..]),
        ("attach-common", "attach-common/src", &[][..]),
    ] {
        let modules = modules(&root.join(src))?;
        let graph = graph(&modules);
        for cycle in cycles(&graph) {
            let names: Vec<String> = cycle.iter().map(|m| name(krate, m)).collect();
            problems.push(format!("import circle: {}", names.join(" <-> ")));
        }
        for (from, tos) in &graph {
            let front =
                |m: &Vec<String>| m.first().is_some_and(|f| front_ends.contains(&f.as_str()));
            if front(from) || from.is_empty() {
                continue;
            }
            for to in tos.iter().filter(|t| front(t)) {
                problems.push(format!(
                    "the library imports a front end: {} -> {}",
                    name(krate, from),
                    name(krate, to)
                ));
            }
        }
    }
    for dir in [
        "attach-user",
        "attach-ebpf",
        "attach-common",
        "tests",
        "xtask",
    ] {
        for file in rust_files(&root.join(dir))? {
            let lines = fs::read_to_string(&file)?.lines().count();
            if lines > MAX_LINES {
                let rel = file.strip_prefix(root).unwrap_or(&file);
                problems.push(format!(
                    "{} has {lines} lines (at most {MAX_LINES})",
                    rel.display()
                ));
            }
        }
    }
    if problems.is_empty() {
        eprintln!("layout: no import circles, no long files");
        return Ok(());
    }
    for p in &problems {
        eprintln!("layout: {p}");
    }
    bail!("{} layout problem(s)", problems.len())
}

fn name(krate: &str, m: &[String]) -> String {
    if m.is_empty() {
        format!("{krate}::(root)")
    } else {
        format!("{krate}::{}", m.join("::"))
    }
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The crate's modules by file (`bin/` holds other crates).
fn modules(src: &Path) -> Result<Vec<Module>> {
    let mut out = Vec::new();
    for file in rust_files(src)? {
        let rel = file.strip_prefix(src)?;
        if rel.starts_with("bin") {
            continue;
        }
        let mut path: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        if matches!(
            path.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            let last = path.pop().unwrap_or_default();
            // attach-user's main.rs is its own crate (the binary).
            if last == "main" && src.join("lib.rs").exists() {
                path.push("main".into());
            }
        }
        out.push(Module {
            path,
            text: strip_comments(&fs::read_to_string(&file)?),
        });
    }
    Ok(out)
}

/// Source without comments, string literals (their words are not paths)
/// and the unit tests at its end (their `super` is the file itself).
fn strip_comments(s: &str) -> String {
    let s = match s.find("#[cfg(test)]\nmod ") {
        Some(at) => &s[..at],
        None => s,
    };
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            // A raw string's hashes are rare here: plain strings only.
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Every `use` tree of a source, expanded into paths (`a::{b, c::d}` ->
/// `a::b`, `a::c::d`), with whether it is a re-export (`pub use`).
fn use_paths(text: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = find_word(rest, "use") {
        let before = rest[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')');
        let tail = &rest[at + 3..];
        let end = tail.find(';').unwrap_or(tail.len());
        let tree: String = tail[..end].chars().filter(|c| !c.is_whitespace()).collect();
        for p in expand(&tree) {
            out.push((public, p));
        }
        rest = &tail[end..];
    }
    out
}

fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find(word) {
        let at = from + i;
        let ok_before = at == 0 || !is_ident(s.as_bytes()[at - 1]);
        let ok_after = s
            .as_bytes()
            .get(at + word.len())
            .is_none_or(|c| !is_ident(*c));
        if ok_before && ok_after {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim_start_matches("::");
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        let path = path.split("as").next().unwrap_or(path);
        return vec![
            path.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut out = Vec::new();
    for part in split_top(inner) {
        for mut p in expand(part) {
            if p.first().is_some_and(|f| f == "self") {
                p.remove(0);
            }
            let mut full = prefix.clone();
            full.extend(p);
            out.push(full);
        }
    }
    out
}

fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The source without its `use` statements.
fn without_uses(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = find_word(rest, "use") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        rest = &tail[tail.find(';').map_or(tail.len(), |e| e + 1)..];
    }
    out.push_str(rest);
    out
}

/// The names of `at`'s child modules.
fn children(at: &[String], known: &BTreeSet<Vec<String>>) -> Vec<String> {
    known
        .iter()
        .filter(|k| k.len() == at.len() + 1 && k.starts_with(at))
        .filter_map(|k| k.last().cloned())
        .collect()
}

/// Paths written inline in code: `crate::a::b`, `super::x`, and `child::x`
/// for a child module of the file's own.
fn inline_paths(text: &str, children: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let heads = ["crate::".to_owned(), "super::".to_owned()]
        .into_iter()
        .chain(children.iter().map(|c| format!("{c}::")));
    for head in heads {
        let mut from = 0;
        while let Some(i) = text[from..].find(&head) {
            let at = from + i;
            from = at + head.len();
            let b = text.as_bytes();
            if at > 0 && (is_ident(b[at - 1]) || b[at - 1] == b':') {
                continue;
            }
            let path: String = text[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
    }
    out
}

type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

fn graph(modules: &[Module]) -> Graph {
    let known: BTreeSet<Vec<String>> = modules.iter().map(|m| m.path.clone()).collect();
    // Re-exports: (module, name) -> the path it stands for.
    let mut reexports: BTreeMap<(Vec<String>, String), Vec<String>> = BTreeMap::new();
    for m in modules {
        for (public, p) in use_paths(&m.text) {
            if public && let Some(abs) = absolute(&m.path, &p, &known) {
                let item = p.last().cloned().unwrap_or_default();
                reexports.insert((m.path.clone(), item), abs);
            }
        }
    }
    let mut g = Graph::new();
    for m in modules {
        let edges = g.entry(m.path.clone()).or_default();
        let uses = use_paths(&m.text)
            .into_iter()
            .filter(|(public, _)| !public)
            .map(|(_, p)| p)
            .chain(inline_paths(
                &without_uses(&m.text),
                &children(&m.path, &known),
            ));
        for p in uses {
            let Some(abs) = absolute(&m.path, &p, &known) else {
                continue;
            };
            let target = resolve(&abs, &known, &reexports, 0);
            if target != m.path {
                edges.insert(target);
            }
        }
    }
    g
}

/// `p` as written in module `at`, made absolute from the crate root;
/// `None` for another crate's paths.
fn absolute(at: &[String], p: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let first = p.first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => at.to_vec(),
        "super" => {
            let mut b = at.to_vec();
            let mut rest = p;
            while rest.first().is_some_and(|s| s == "super") {
                b.pop();
                rest = &rest[1..];
            }
            b.extend(rest.iter().cloned());
            return Some(b);
        }
        // A child module named without `self::`.
        child => {
            let mut c = at.to_vec();
            c.push(child.to_owned());
            if known.contains(&c) {
                at.to_vec()
            } else {
                return None;
            }
        }
    };
    let skip = usize::from(matches!(first.as_str(), "crate" | "self"));
    base.extend(p[skip..].iter().cloned());
    Some(base)
}

/// The file that holds what `abs` names: its longest known module prefix,
/// followed through re-exports.
fn resolve(
    abs: &[String],
    known: &BTreeSet<Vec<String>>,
    reexports: &BTreeMap<(Vec<String>, String), Vec<String>>,
    depth: usize,
) -> Vec<String> {
    let mut n = abs.len();
    while n > 0 && !known.contains(&abs[..n].to_vec()) {
        n -= 1;
    }
    let module = abs[..n].to_vec();
    if depth < 8
        && let Some(item) = abs.get(n)
        && let Some(target) = reexports.get(&(module.clone(), item.clone()))
        && target.as_slice() != abs
    {
        let mut t = target.clone();
        t.extend(abs[n + 1..].iter().cloned());
        return resolve(&t, known, reexports, depth + 1);
    }
    module
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        if let Some(ws) = s.g.get(v) {
            for w in ws {
                let Some((w, _)) = s.g.get_key_value(w) else {
                    continue;
                };
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let l = s.low[v].min(s.low[w]);
                    s.low.insert(v, l);
                } else if s.on.contains(w) {
                    let l = s.low[v].min(s.index[w]);
                    s.low.insert(v, l);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_trees_expand() {
        let p = use_paths("use crate::{a::{B, c::D}, e};\npub use x::Y;");
        let flat: Vec<(bool, String)> = p.into_iter().map(|(b, v)| (b, v.join("::"))).collect();
        assert_eq!(
            flat,
            [
                (false, "crate::a::B".into()),
                (false, "crate::a::c::D".into()),
                (false, "crate::e".into()),
                (true, "x::Y".into()),
            ]
        );
    }

    #[test]
    fn a_circle_is_found_and_a_reexport_is_followed() {
        let m = |p: &[&str], text: &str| Module {
            path: p.iter().map(|s| s.to_string()).collect(),
            text: text.into(),
        };
        let modules = [
            m(&[], "pub mod a; pub mod b; pub use a::A;"),
            m(&["a"], "use crate::b::B; pub struct A;"),
            m(&["b"], "use crate::A; pub struct B;"),
        ];
        let g = graph(&modules);
        let c = cycles(&g);
        assert_eq!(c.len(), 1, "{g:?}");
        assert_eq!(c[0].len(), 2);
        let modules = [
            m(&[], "pub mod a; pub mod b;"),
            m(&["a"], "use crate::b::B;"),
            m(&["b"], "pub struct B;"),
        ];
        assert!(cycles(&graph(&modules)).is_empty());
    }
}
