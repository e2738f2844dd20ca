//! The shape of the workspace's code, checked on every `cargo test` (issue #15):
//!
//! - no import circle between the source files of one crate: file A naming an item of
//!   file B through `crate::` or `super::` is an edge A -> B, and the edges must form no
//!   cycle, so each file can be read knowing only the files below it;
//! - no source file over 600 lines, test code excluded (a `tests.rs` file or directory,
//!   and a file's trailing `#[cfg(test)] mod tests { .. }`).
//!
//! A module's path comes from its file's place under `src/` (`a/b.rs` and `a/b/mod.rs`
//! are `a::b`) or from a `#[path = ".."]` attribute on its `mod` line. A path names the
//! deepest file module it reaches: `crate::report::console::render` is
//! `report/console.rs`, `crate::report::Row` is `report/mod.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;
const CRATES: [&str; 6] = ["proto", "common", "worker", "master", "mock", "benches"];

/// One source file of a crate: its module path and the text outside its test module.
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    /// The file is `mod.rs`/a crate root: `super::` goes up one level less.
    owns_dir: bool,
    code: String,
}

#[test]
fn no_source_file_is_over_600_lines() {
    let mut long = Vec::new();
    for krate in CRATES {
        for tree in crate_trees(krate) {
            for file in tree {
                if is_test_file(&file.path) {
                    continue;
                }
                let lines = file.code.lines().count();
                if lines > MAX_LINES {
                    long.push(format!("{} ({lines} lines)", file.path.display()));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these by concept (at most {MAX_LINES} lines outside tests):\n  {}",
        long.join("\n  ")
    );
}

#[test]
fn no_import_circle_between_the_files_of_a_crate() {
    let mut circles = Vec::new();
    for krate in CRATES {
        for tree in crate_trees(krate) {
            let graph = edges(&tree);
            for component in strongly_connected(&graph) {
                if component.len() > 1 {
                    circles.push(describe_circle(&tree, &graph, &component));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles (a file names an item of a file that names it back):\n  {}",
        circles.join("\n  ")
    );
}

/// The edge finder on a small tree: `use` groups, `super::`, plain paths.
#[test]
fn the_checker_sees_grouped_uses_super_and_paths() {
    let file = |module: &[&str], owns_dir: bool, code: &str| SourceFile {
        path: PathBuf::from(module.join("/")),
        module: module.iter().map(|s| s.to_string()).collect(),
        owns_dir,
        code: code.to_string(),
    };
    let tree = vec![
        file(&[], true, "mod a; mod b;"),
        file(
            &["a"],
            true,
            "use crate::{b::{X, c::Y}, d};\n// crate::e::Z in a comment",
        ),
        file(&["b"], false, "fn f() { super::a::g(); }"),
        file(&["b", "c"], false, "use super::super::d::W;"),
        file(&["d"], false, "fn h() -> crate::a::T { todo!() }"),
        file(&["e"], false, ""),
    ];
    let graph = edges(&tree);
    let names =
        |i: usize| -> BTreeSet<String> { graph[i].iter().map(|&j| tree[j].path.display().to_string()).collect() };
    assert_eq!(names(1), ["b", "b/c", "d"].map(String::from).into());
    assert_eq!(names(2), ["a"].map(String::from).into());
    assert_eq!(names(3), ["d"].map(String::from).into());
    assert_eq!(names(4), ["a"].map(String::from).into());
    let circles: Vec<_> = strongly_connected(&graph).into_iter().filter(|c| c.len() > 1).collect();
    assert_eq!(
        circles.len(),
        1,
        "a -> b -> a, a -> d -> a and b/c -> d share one circle"
    );
    assert_eq!(circles[0].len(), 4, "b/c -> d -> a -> b/c joins it");
}

fn is_test_file(path: &Path) -> bool {
    path.components()
        .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs")
}

/// Every module tree under `KRATE/src`: the library's and each binary's.
fn crate_trees(krate: &str) -> Vec<Vec<SourceFile>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src");
    let mut roots = Vec::new();
    if src.join("lib.rs").exists() {
        roots.push(src.join("lib.rs"));
    } else if src.join("main.rs").exists() {
        roots.push(src.join("main.rs"));
    }
    if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = bins.map(|e| e.unwrap().path()).collect();
        bins.sort();
        for bin in bins {
            if bin.extension().is_some_and(|e| e == "rs") {
                roots.push(bin);
            } else if bin.join("main.rs").exists() {
                roots.push(bin.join("main.rs"));
            }
        }
    }
    // A library crate's own main.rs is a separate (tiny) crate: checked for length only.
    let mut trees: Vec<Vec<SourceFile>> = roots.iter().map(|root| module_tree(root)).collect();
    if src.join("lib.rs").exists() && src.join("main.rs").exists() {
        trees.push(vec![read_source(&src.join("main.rs"), Vec::new(), true)]);
    }
    trees
}

/// The files of the module tree rooted at `root`, following `mod x;` declarations.
fn module_tree(root: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    let mut pending = vec![(root.to_path_buf(), Vec::<String>::new(), true)];
    while let Some((path, module, owns_dir)) = pending.pop() {
        let file = read_source(&path, module.clone(), owns_dir);
        let dir = if owns_dir {
            path.parent().unwrap().to_path_buf()
        } else {
            path.with_extension("")
        };
        for (name, explicit) in child_modules(&std::fs::read_to_string(&path).unwrap()) {
            let mut child = module.clone();
            child.push(name.clone());
            let (child_path, child_owns) = match explicit {
                Some(p) => (path.parent().unwrap().join(p), false),
                None if dir.join(format!("{name}.rs")).exists() => (dir.join(format!("{name}.rs")), false),
                None if dir.join(&name).join("mod.rs").exists() => (dir.join(&name).join("mod.rs"), true),
                None => continue, // an inline `mod x { .. }` spelled on one line, or cfg'd out
            };
            pending.push((child_path, child, child_owns));
        }
        files.push(file);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn read_source(path: &Path, module: Vec<String>, owns_dir: bool) -> SourceFile {
    let text = std::fs::read_to_string(path).unwrap();
    SourceFile {
        path: path
            .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .unwrap_or(path)
            .to_path_buf(),
        module,
        owns_dir,
        code: without_test_module(&text),
    }
}

/// `mod name;` declarations (not inline modules), with a `#[path]` on the line before.
fn child_modules(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut path_attr = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("#[path = \"") {
            path_attr = rest.split('"').next().map(str::to_string);
            continue;
        }
        let decl = line
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub(super) ")
            .trim_start_matches("pub ");
        if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            out.push((name.trim().to_string(), path_attr.take()));
        } else if !line.starts_with("#[") {
            path_attr = None;
        }
    }
    out
}

/// The text up to a trailing `#[cfg(test)]` + `mod tests {` (inline tests are not source).
fn without_test_module(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod tests {"))
        .unwrap_or(lines.len());
    lines[..cut].join("\n")
}

/// Strips `//` comments and string literals' contents, so only code is searched.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_str {
                if c == '"' && prev != '\\' {
                    in_str = false;
                    out.push('"');
                }
                prev = if prev == '\\' && c == '\\' { ' ' } else { c };
                continue;
            }
            if c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' {
                in_str = true;
            }
            out.push(c);
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// Every path a file names through `crate::`, `super::` or `self::`, absolute.
fn named_paths(file: &SourceFile) -> Vec<Vec<String>> {
    let code = code_only(&file.code);
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let base = if !starts_word {
            None
        } else if code.as_bytes()[i..].starts_with(b"crate::") {
            i += "crate::".len();
            Some(Vec::new())
        } else if code.as_bytes()[i..].starts_with(b"super::") {
            // `super` of a file module: its parent module; of a mod.rs: the dir's parent.
            let mut base = file.module.clone();
            if !file.owns_dir || !base.is_empty() {
                base.pop();
            }
            i += "super::".len();
            while code.as_bytes()[i..].starts_with(b"super::") {
                base.pop();
                i += "super::".len();
            }
            Some(base)
        } else {
            None
        };
        match base {
            Some(base) => i = parse_tree(&code, i, base, &mut out),
            None => i += 1,
        }
    }
    out
}

/// Parses a use tree (`a::b`, `a::{b, c::d}`) starting at `i`; returns where it ends.
fn parse_tree(code: &str, mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let bytes = code.as_bytes();
    let mut path = prefix;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'{' {
            i += 1;
            loop {
                i = parse_tree(code, i, path.clone(), out);
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return i + 1;
                }
            }
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start {
            path.push(code[start..i].to_string());
        }
        if code.as_bytes()[i..].starts_with(b"::") {
            i += 2;
            continue;
        }
        if !path.is_empty() {
            out.push(path);
        }
        return i;
    }
}

/// For each file, the files it names (by index into `tree`), itself excluded.
fn edges(tree: &[SourceFile]) -> Vec<BTreeSet<usize>> {
    let by_module: BTreeMap<&[String], usize> =
        tree.iter().enumerate().map(|(i, f)| (f.module.as_slice(), i)).collect();
    tree.iter()
        .enumerate()
        .map(|(me, file)| {
            named_paths(file)
                .into_iter()
                .filter_map(|path| (0..=path.len()).rev().find_map(|n| by_module.get(&path[..n]).copied()))
                .filter(|&target| target != me)
                .collect()
        })
        .collect()
}

/// Tarjan's strongly connected components.
fn strongly_connected(graph: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct State<'g> {
        graph: &'g [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in s.graph[v].iter() {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(i) if s.on_stack[w] => s.low[v] = s.low[v].min(i),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let n = graph.len();
    let mut s = State {
        graph,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

/// One cycle through a component, as `a.rs -> b.rs -> a.rs`, for the failure message.
fn describe_circle(tree: &[SourceFile], graph: &[BTreeSet<usize>], component: &[usize]) -> String {
    let members: BTreeSet<usize> = component.iter().copied().collect();
    let start = *members.iter().next().unwrap();
    // Breadth-first from `start` back to `start` within the component.
    let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut end = None;
    while let Some(v) = queue.pop_front() {
        for &w in &graph[v] {
            if !members.contains(&w) {
                continue;
            }
            if w == start {
                end = Some(v);
                break;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = came_from.entry(w) {
                e.insert(v);
                queue.push_back(w);
            }
        }
        if end.is_some() {
            break;
        }
    }
    let mut cycle = vec![start];
    let mut v = end.unwrap_or(start);
    while v != start {
        cycle.push(v);
        v = came_from[&v];
    }
    cycle.push(start);
    cycle.reverse();
    let names: Vec<String> = cycle.iter().map(|&i| tree[i].path.display().to_string()).collect();
    let mut all: Vec<String> = component.iter().map(|&i| tree[i].path.display().to_string()).collect();
    all.sort();
    format!(
        "{} files in a circle, e.g. {} (all: {})",
        component.len(),
        names.join(" -> "),
        all.join(", ")
    )
}
