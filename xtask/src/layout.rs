//! `cargo xtask layout`: checks the module layout of the userspace crate, `tcptrace/src`.
//!
//! The crate is organised in folders by layer ([`LAYERS`]). The check enforces what that
//! organisation promises: a file imports only its own layer and lower ones, no two files import
//! each other (directly or around a longer loop), no subcommand imports another, only the edge
//! layers open files or sockets, and every file opens with a `//!` comment saying what it is
//! for. [`check`] is the analysis, pure over (path, text) pairs; [`run`] reads the tree.
//!
//! A file imports another when it writes a path that reaches the other's module: in a `use`
//! (groups expanded, `pub use` included) or in code (`crate::diag::f()`), from `crate`, `self`,
//! `super`, `tcptrace` in `main.rs`, or a name the file declared (`mod x;`) or imported
//! (`use crate::commands;` then `commands::trace::run()`). A path reaches the deepest module
//! along it that has a file; `mod x;` itself imports nothing. Test code may import anything:
//! items under `#[cfg(test)]` are left out, and so are the files of modules declared there.
//!
//! Rust is read with a small lexer, not `syn`: the checks need paths and a handful of tokens,
//! not a syntax tree, and they must see inside macro invocations (`format!`, `tokio::select!`,
//! `macro_rules!` bodies), which `syn` leaves as unparsed token streams anyway. Knowing
//! comments, strings (raw ones included), chars and lifetimes is what keeps a token scan from
//! being fooled, and that is a hundred lines, without a dependency.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, hash_map::Entry},
    fmt, fs,
    path::Path,
    process::ExitCode,
};

use anyhow::{Context as _, bail};

use crate::run::workspace_root;

/// The layers, lowest first, and their ranks: a file may import a file of its own layer or of a
/// strictly lower rank. A plain name is a folder under `src/` (`kernel` is `src/kernel/**`); a
/// name ending in `.rs` is a top-level file (with its submodules' folder, should it grow one).
pub const LAYERS: &[(&str, u8)] = &[
    ("core", 0),
    ("kernel", 1),
    ("os", 1),
    ("aggregate", 2),
    ("census", 2),
    ("render", 3),
    ("stream", 3),
    ("cli.rs", 4),
    ("commands", 5),
    ("lib.rs", 6),
    ("main.rs", 6),
];

/// The layers that may open files and sockets: tcptrace's edges with the system.
const EDGE_LAYERS: &[&str] = &["kernel", "os"];

/// The layer of the subcommands, each of which stands alone.
const COMMANDS: &str = "commands";

/// The checked sources, from the workspace root.
const SOURCE_DIR: &str = "tcptrace/src";

/// The library's crate name, by which `main.rs` reaches the modules that `lib.rs` declares.
const LIBRARY: &str = "tcptrace";

/// Identifiers that open a file or a socket wherever they appear.
const OPENING_TYPES: &[&str] = &[
    "OpenOptions",
    "TcpListener",
    "TcpStream",
    "UdpSocket",
    "UnixStream",
    "UnixListener",
];

/// Functions that read a file (or a directory) when called.
const OPENING_CALLS: &[&str] = &["read_to_string", "read_dir"];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// Relative to the checked `src/` folder.
    pub file: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// Checks `tcptrace/src`, printing each violation on its own line; fails when there is any.
pub fn run() -> anyhow::Result<ExitCode> {
    let root = workspace_root().join(SOURCE_DIR);
    let mut files = Vec::new();
    read_tree(&root, &root, &mut files)?;
    files.sort();
    let sources: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    let violations = check(&sources);
    if violations.is_empty() {
        eprintln!(
            "xtask: the layout of {SOURCE_DIR} is sound ({} files)",
            files.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for violation in &violations {
        println!("{SOURCE_DIR}/{violation}");
    }
    bail!(
        "{} layout violations in {SOURCE_DIR} ({} files)",
        violations.len(),
        files.len()
    )
}

/// Every `.rs` file under `dir`, as (path relative to `root` with `/` separators, text).
fn read_tree(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            read_tree(root, &path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let relative = path.strip_prefix(root)?.components();
            let relative: Vec<_> = relative
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.push((relative.join("/"), text));
        }
    }
    Ok(())
}

/// The layout's violations in a crate's `src/` folder, given as (path relative to `src/`, text)
/// pairs, sorted by file.
pub fn check(files: &[(&str, &str)]) -> Vec<Violation> {
    let tree = Tree::new(files);
    let mut violations = Vec::new();
    let mut report = |file: &str, message: String| {
        violations.push(Violation {
            file: file.to_string(),
            message,
        })
    };
    for source in &tree.sources {
        if let Some(message) = doc_comment(source.text) {
            report(source.path, message);
        }
        if source.test_only {
            continue;
        }
        if let Err(message) = layer_of(source.path) {
            report(source.path, message);
        }
        if let Some(message) = opens_files(source) {
            report(source.path, message);
        }
    }
    let edges = tree.edges();
    for ((from, to), uses) in &edges {
        let (from, to) = (&tree.sources[*from], &tree.sources[*to]);
        if let Some(message) = layer_edge(from.path, to.path, uses) {
            report(from.path, message);
        }
        if let Some(message) = command_edge(from.path, to.path, uses) {
            report(from.path, message);
        }
    }
    for cycle in cycles(tree.sources.len(), &edges) {
        let names: Vec<_> = cycle.iter().map(|&file| tree.sources[file].path).collect();
        let links: Vec<_> = edges
            .iter()
            .filter(|((from, to), _)| cycle.contains(from) && cycle.contains(to))
            .map(|((from, to), uses)| {
                format!(
                    "{} -> {} ({})",
                    tree.sources[*from].path,
                    tree.sources[*to].path,
                    uses.lines()
                )
            })
            .collect();
        report(
            names[0],
            format!(
                "import cycle between {}: {}",
                names.join(", "),
                links.join(", ")
            ),
        );
    }
    violations.sort();
    violations
}

/// A file opens with a `//!` comment that says something.
fn doc_comment(text: &str) -> Option<String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty());
    let Some(first) = lines.next() else {
        return Some("is empty: it should open with a `//!` comment saying what it is for".into());
    };
    let Some(doc) = first.strip_prefix("//!") else {
        return Some("does not open with a `//!` comment saying what it is for".into());
    };
    let rest = lines.map_while(|line| line.strip_prefix("//!"));
    if std::iter::once(doc)
        .chain(rest)
        .all(|doc| doc.trim().is_empty())
    {
        return Some("opens with an empty `//!` comment: say what the file is for".into());
    }
    None
}

/// The index in [`LAYERS`] of the layer a file belongs to, or why it belongs to none.
fn layer_of(path: &str) -> Result<usize, String> {
    let folders = || {
        let names: Vec<_> = LAYERS
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !name.ends_with(".rs"))
            .collect();
        names.join(", ")
    };
    match path.split_once('/') {
        None => LAYERS
            .iter()
            .position(|(name, _)| *name == path)
            .ok_or_else(|| format!("belongs in a layer folder ({})", folders())),
        Some((folder, _)) => LAYERS
            .iter()
            .position(|(name, _)| *name == folder || name.strip_suffix(".rs") == Some(folder))
            .ok_or_else(|| format!("{folder}/ is not a layer folder ({})", folders())),
    }
}

fn layer_name(layer: usize) -> String {
    let name = LAYERS[layer].0;
    if name.ends_with(".rs") {
        name.to_string()
    } else {
        format!("{name}/")
    }
}

/// Imports go to the file's own layer or a strictly lower one. Files outside any layer are
/// reported as such and their imports left alone, since their rank is what the move decides.
fn layer_edge(from: &str, to: &str, uses: &Uses) -> Option<String> {
    let (Ok(from_layer), Ok(to_layer)) = (layer_of(from), layer_of(to)) else {
        return None;
    };
    let (from_rank, to_rank) = (LAYERS[from_layer].1, LAYERS[to_layer].1);
    if from_layer == to_layer || to_rank < from_rank {
        return None;
    }
    Some(format!(
        "imports {to} ({uses}): {} (rank {from_rank}) may import only its own folder and lower \
         ranks, and {} is rank {to_rank}",
        layer_name(from_layer),
        layer_name(to_layer),
    ))
}

/// The command a file of `commands/` belongs to (`commands/x.rs` and `commands/x/**` are
/// command `x`); `commands/mod.rs` is `mod`, which no command is.
fn command_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(COMMANDS)?.strip_prefix('/')?;
    let first = rest.split('/').next()?;
    Some(first.strip_suffix(".rs").unwrap_or(first))
}

/// A command reaches no other file of `commands/`, `commands/mod.rs` included (what commands
/// share belongs to a lower layer); only `commands/mod.rs`, which declares them, refers to them.
fn command_edge(from: &str, to: &str, uses: &Uses) -> Option<String> {
    if from == format!("{COMMANDS}/mod.rs") {
        return None;
    }
    let (from_command, to_command) = (command_of(from)?, command_of(to)?);
    (from_command != to_command).then(|| {
        format!(
            "imports {to} ({uses}): a command imports no other file of {COMMANDS}/ (move what \
             they share to a lower layer)"
        )
    })
}

/// Outside the edge layers, no (non-test) token that opens a file or a socket.
fn opens_files(source: &Source) -> Option<String> {
    let folder = source.path.split_once('/').map(|(folder, _)| folder);
    if folder.is_some_and(|folder| EDGE_LAYERS.contains(&folder)) {
        return None;
    }
    let mut found: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    let tokens = &source.scan.tokens;
    let mut i = 0;
    while i < tokens.len() {
        let line = tokens[i].line;
        let next_is_sep = is_sep(tokens, i + 1);
        let what = match ident(tokens, i) {
            Some("std") if next_is_sep && ident(tokens, i + 2) == Some("fs") => {
                // `std::fs::read` is one finding, not also an `fs::`.
                i += 2;
                Some("std::fs".to_string())
            }
            Some(name @ ("fs" | "File")) if next_is_sep => Some(format!("{name}::")),
            Some("libc") if next_is_sep => ident(tokens, i + 2)
                .filter(|name| name.starts_with("open") || name.starts_with("socket"))
                .map(|name| format!("libc::{name}")),
            Some(name) if OPENING_TYPES.contains(&name) => Some(name.to_string()),
            Some(name) if OPENING_CALLS.contains(&name) && punct(tokens, i + 1) == Some('(') => {
                Some(format!("{name}("))
            }
            _ => None,
        };
        if let Some(what) = what {
            found.entry(what).or_default().insert(line);
        }
        i += 1;
    }
    // A group (`use std::{fs, io};`) names `std::fs` only once expanded.
    for path in source.scan.paths.iter().filter(|path| path.from_use) {
        let segments = &path.segments;
        for pair in segments.windows(2) {
            let what = match (pair[0].as_str(), pair[1].as_str()) {
                ("std", "fs") => "std::fs".to_string(),
                ("libc", name) if name.starts_with("open") || name.starts_with("socket") => {
                    format!("libc::{name}")
                }
                _ => continue,
            };
            found.entry(what).or_default().insert(path.line);
        }
    }
    if found.is_empty() {
        return None;
    }
    let found: Vec<_> = found
        .iter()
        .map(|(what, lines)| format!("`{what}` ({})", lines_text(lines)))
        .collect();
    Some(format!(
        "opens files or sockets outside {}: {}",
        EDGE_LAYERS
            .iter()
            .map(|layer| format!("{layer}/"))
            .collect::<Vec<_>>()
            .join(" and "),
        found.join(", ")
    ))
}

/// At most this many line numbers are listed: enough to find the imports, and a type used on
/// every other line of a file does not bury the message.
const MAX_LINES_SHOWN: usize = 5;

fn lines_text(lines: &BTreeSet<usize>) -> String {
    let numbers: Vec<_> = lines
        .iter()
        .take(MAX_LINES_SHOWN)
        .map(usize::to_string)
        .collect();
    let more = lines.len().saturating_sub(MAX_LINES_SHOWN);
    match (numbers.as_slice(), more) {
        ([one], _) => format!("line {one}"),
        (_, 0) => format!("lines {}", numbers.join(", ")),
        _ => format!("lines {} and {more} more", numbers.join(", ")),
    }
}

/// How one file reaches another: the first path written, and every line that does.
#[derive(Debug, Default)]
struct Uses {
    written: String,
    lines: BTreeSet<usize>,
}

impl Uses {
    fn lines(&self) -> String {
        lines_text(&self.lines)
    }
}

impl fmt::Display for Uses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`, {}", self.written, self.lines())
    }
}

type Edges = BTreeMap<(usize, usize), Uses>;

/// The import cycles: the strongly connected components of more than one file (Tarjan's
/// algorithm), each sorted, in the order of their first file.
fn cycles(files: usize, edges: &Edges) -> Vec<Vec<usize>> {
    struct Tarjan<'a> {
        next: Vec<Vec<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        components: &'a mut Vec<Vec<usize>>,
    }
    impl Tarjan<'_> {
        fn visit(&mut self, file: usize) {
            self.index[file] = Some(self.counter);
            self.low[file] = self.counter;
            self.counter += 1;
            self.stack.push(file);
            self.on_stack[file] = true;
            for next in self.next[file].clone() {
                match self.index[next] {
                    None => {
                        self.visit(next);
                        self.low[file] = self.low[file].min(self.low[next]);
                    }
                    Some(index) if self.on_stack[next] => {
                        self.low[file] = self.low[file].min(index);
                    }
                    Some(_) => {}
                }
            }
            if Some(self.low[file]) == self.index[file] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack[member] = false;
                    component.push(member);
                    if member == file {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    self.components.push(component);
                }
            }
        }
    }
    let mut next = vec![Vec::new(); files];
    for &(from, to) in edges.keys() {
        next[from].push(to);
    }
    let mut components = Vec::new();
    let mut tarjan = Tarjan {
        next,
        index: vec![None; files],
        low: vec![0; files],
        on_stack: vec![false; files],
        stack: Vec::new(),
        counter: 0,
        components: &mut components,
    };
    for file in 0..files {
        if tarjan.index[file].is_none() {
            tarjan.visit(file);
        }
    }
    components.sort();
    components
}

struct Source<'a> {
    path: &'a str,
    text: &'a str,
    /// Its module's path from the crate root: `a/b.rs` and `a/b/mod.rs` are `[a, b]`.
    module: Vec<String>,
    scan: Scan,
    /// Declared under `#[cfg(test)]` (itself or a parent): test code may import anything.
    test_only: bool,
}

struct Tree<'a> {
    sources: Vec<Source<'a>>,
    /// The modules of the files that are not test-only.
    modules: HashMap<Vec<String>, usize>,
}

impl<'a> Tree<'a> {
    fn new(files: &[(&'a str, &'a str)]) -> Self {
        let mut sources: Vec<_> = files
            .iter()
            .map(|&(path, text)| Source {
                path,
                text,
                module: module_of(path),
                scan: scan(&strip_tests(&lex(text))),
                test_only: false,
            })
            .collect();
        let mut all = HashMap::new();
        for (file, source) in sources.iter().enumerate() {
            // The crate root is lib.rs's; main.rs reaches it as `tcptrace::`.
            if source.path != "main.rs" || !all.contains_key(&source.module) {
                all.insert(source.module.clone(), file);
            }
        }
        let test_only: Vec<_> = (0..sources.len())
            .map(|file| is_test_only(&sources, &all, &sources[file].module))
            .collect();
        for (source, test_only) in sources.iter_mut().zip(test_only) {
            source.test_only = test_only;
        }
        let modules = all
            .into_iter()
            .filter(|(_, file)| !sources[*file].test_only)
            .collect();
        Self { sources, modules }
    }

    /// The edges between files that are not test-only, with how each is written.
    fn edges(&self) -> Edges {
        let mut edges = Edges::new();
        for (from, source) in self.sources.iter().enumerate() {
            if source.test_only {
                continue;
            }
            let bindings = self.bindings(source);
            for path in &source.scan.paths {
                let Some(absolute) = absolute(source, path, &bindings) else {
                    continue;
                };
                let Some(to) = self.resolve(&absolute) else {
                    continue;
                };
                if to != from {
                    let uses = edges.entry((from, to)).or_default();
                    if uses.lines.is_empty() {
                        uses.written = path.written();
                    }
                    uses.lines.insert(path.line);
                }
            }
        }
        edges
    }

    /// The file of the deepest existing module along a path from the crate root.
    fn resolve(&self, absolute: &[String]) -> Option<usize> {
        (0..=absolute.len())
            .rev()
            .find_map(|len| self.modules.get(&absolute[..len]).copied())
    }

    /// What the names a file declares or imports stand for, as paths from the crate root, so
    /// that `commands::trace::run()` after `use crate::commands;` is seen to reach
    /// `commands/trace.rs`. Names are taken file-wide, which is close enough: a file that
    /// binds one name to two crate paths in two scopes would be confusing anyway.
    fn bindings(&self, source: &Source) -> HashMap<String, Vec<String>> {
        let mut bindings = HashMap::new();
        for (declared, test) in &source.scan.mods {
            let Some(name) = declared.last() else {
                continue;
            };
            if !test {
                let module = [source.module.as_slice(), declared].concat();
                bindings.entry(name.clone()).or_insert(module);
            }
        }
        // Imports may go through one another (`use crate::a; use a::b;`), in any order.
        loop {
            let mut changed = false;
            for path in source.scan.paths.iter().filter(|path| path.from_use) {
                let Some(absolute) = absolute(source, path, &bindings) else {
                    continue;
                };
                let mut bound = Vec::new();
                if path.glob {
                    for module in self.modules.keys() {
                        if module.len() == absolute.len() + 1 && module.starts_with(&absolute) {
                            let name = module.last().expect("one segment longer").clone();
                            bound.push((name, module.clone()));
                        }
                    }
                } else if let Some(name) = &path.binding {
                    bound.push((name.clone(), absolute));
                }
                for (name, module) in bound {
                    if let Entry::Vacant(entry) = bindings.entry(name) {
                        entry.insert(module);
                        changed = true;
                    }
                }
            }
            if !changed {
                return bindings;
            }
        }
    }
}

/// `a/b.rs` and `a/b/mod.rs` are module `[a, b]`; `lib.rs` and `main.rs` the root.
fn module_of(path: &str) -> Vec<String> {
    let path = path.strip_suffix(".rs").unwrap_or(path);
    let mut module: Vec<String> = path.split('/').map(str::to_string).collect();
    if module.last().is_some_and(|last| last == "mod") {
        module.pop();
    }
    if module == ["lib"] || module == ["main"] {
        module.clear();
    }
    module
}

/// True when the file's module, or one of its parents, is declared under `#[cfg(test)]` by the
/// nearest file above it.
fn is_test_only(sources: &[Source], all: &HashMap<Vec<String>, usize>, module: &[String]) -> bool {
    for parent_len in (0..module.len()).rev() {
        let Some(&parent) = all.get(&module[..parent_len]) else {
            continue;
        };
        let below = &module[parent_len..];
        let declared_test = sources[parent].scan.mods.iter().any(|(declared, test)| {
            *test && declared.len() <= below.len() && below.starts_with(declared)
        });
        return declared_test || is_test_only(sources, all, &module[..parent_len]);
    }
    false
}

/// A path written in a file, as the segments written (a `use` group expanded into one path per
/// leaf).
#[derive(Clone, Debug, PartialEq, Eq)]
struct WrittenPath {
    /// The inline modules (`mod x { ... }`) it is written in, from the file's module.
    scope: Vec<String>,
    segments: Vec<String>,
    /// Starts with `::` (an external crate).
    leading: bool,
    from_use: bool,
    /// `use a::*`.
    glob: bool,
    /// The name a `use` binds (`b` for `use a::b`, `c` for `use a::b as c`).
    binding: Option<String>,
    line: usize,
}

impl WrittenPath {
    fn written(&self) -> String {
        let mut text = if self.leading { "::" } else { "" }.to_string();
        text += &self.segments.join("::");
        if self.glob {
            text += "::*";
        }
        text
    }
}

/// A written path made absolute: the segments from the crate root, when it is a path into the
/// crate at all.
fn absolute(
    source: &Source,
    path: &WrittenPath,
    bindings: &HashMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    let (first, rest) = path.segments.split_first()?;
    let is_main = source.path == "main.rs";
    if path.leading {
        return (is_main && first == LIBRARY).then(|| rest.to_vec());
    }
    let current = || [source.module.as_slice(), &path.scope].concat();
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        LIBRARY if is_main => Some(rest.to_vec()),
        "self" => Some([current().as_slice(), rest].concat()),
        "super" => {
            let mut base = current();
            let mut rest = path.segments.as_slice();
            while rest.first().is_some_and(|segment| segment == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            Some([base.as_slice(), rest].concat())
        }
        name => bindings
            .get(name)
            .map(|bound| [bound.as_slice(), rest].concat()),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A string, char or number literal: what it says never matters here.
    Literal,
    Lifetime,
    /// Stands for a `#[cfg(test)]` module declaration taken out with the rest of the test code.
    TestMod(String),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

fn ident(tokens: &[Token], i: usize) -> Option<&str> {
    match tokens.get(i).map(|token| &token.tok) {
        Some(Tok::Ident(name)) => Some(name),
        _ => None,
    }
}

fn punct(tokens: &[Token], i: usize) -> Option<char> {
    match tokens.get(i).map(|token| &token.tok) {
        Some(Tok::Punct(c)) => Some(*c),
        _ => None,
    }
}

fn is_sep(tokens: &[Token], i: usize) -> bool {
    matches!(tokens.get(i).map(|token| &token.tok), Some(Tok::PathSep))
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Rust source as tokens, without comments; literals keep only their line.
fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        let mut push = |tok| {
            tokens.push(Token {
                tok,
                line: start_line,
            })
        };
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            // Block comments nest.
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some(end) = string_end(&chars, i) {
            line += chars[i..end].iter().filter(|&&c| c == '\n').count();
            push(Tok::Literal);
            i = end;
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let quote = if c == 'b' { i + 1 } else { i };
            if at(quote + 1) == '\\' {
                // An escape (`'\''`, `'\u{2192}'`): the closing quote follows the escaped char.
                let mut end = quote + 3;
                while end < chars.len() && chars[end] != '\'' && chars[end] != '\n' {
                    end += 1;
                }
                push(Tok::Literal);
                i = end + 1;
            } else if at(quote + 2) == '\'' {
                push(Tok::Literal);
                i = quote + 3;
            } else if is_ident_start(at(quote + 1)) && c != 'b' {
                let mut end = quote + 1;
                while is_ident_continue(at(end)) {
                    end += 1;
                }
                push(Tok::Lifetime);
                i = end;
            } else {
                push(Tok::Punct('\''));
                i = quote + 1;
            }
        } else if c == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
            let mut end = i + 2;
            while is_ident_continue(at(end)) {
                end += 1;
            }
            push(Tok::Ident(chars[i + 2..end].iter().collect()));
            i = end;
        } else if is_ident_start(c) {
            let mut end = i;
            while is_ident_continue(at(end)) {
                end += 1;
            }
            push(Tok::Ident(chars[i..end].iter().collect()));
            i = end;
        } else if c.is_ascii_digit() {
            let mut end = i;
            while is_ident_continue(at(end)) || (at(end) == '.' && at(end + 1).is_ascii_digit()) {
                end += 1;
            }
            push(Tok::Literal);
            i = end;
        } else if c == ':' && at(i + 1) == ':' {
            push(Tok::PathSep);
            i += 2;
        } else {
            push(Tok::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// The end (one past the closing quote) of a string literal starting at `i`: `"…"`, `b"…"`,
/// `c"…"`, and their raw forms `r#"…"#` (any number of `#`), `br"…"`, `cr"…"`.
fn string_end(chars: &[char], i: usize) -> Option<usize> {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut j = i;
    if matches!(at(j), 'b' | 'c') {
        j += 1;
    }
    let raw = at(j) == 'r';
    if raw {
        j += 1;
    }
    let hashes = chars[j.min(chars.len())..]
        .iter()
        .take_while(|&&c| c == '#')
        .count();
    if (!raw && hashes > 0) || at(j + hashes) != '"' {
        return None;
    }
    j += hashes + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' if !raw => j += 2,
            '"' if chars[j + 1..].iter().take_while(|&&c| c == '#').count() >= hashes => {
                return Some(j + 1 + hashes);
            }
            _ => j += 1,
        }
    }
    Some(chars.len())
}

/// The index of the bracket closing the one at `open`.
fn closing(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The tokens with every item under `#[cfg(test)]` taken out (test code may import anything);
/// a test module's declaration is kept as a [`Tok::TestMod`], which marks its file test-only.
fn strip_tests(tokens: &[Token]) -> Vec<Token> {
    let mut kept = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if let Some(after) = cfg_test_end(tokens, i) {
            let mut item = after;
            while punct(tokens, item) == Some('#') && punct(tokens, item + 1) == Some('[') {
                match closing(tokens, item + 1) {
                    Some(end) => item = end + 1,
                    None => break,
                }
            }
            if let Some((end, module)) = item_end(tokens, item) {
                if let Some(name) = module {
                    kept.push(Token {
                        tok: Tok::TestMod(name),
                        line: tokens[item].line,
                    });
                }
                i = end;
                continue;
            }
        }
        kept.push(tokens[i].clone());
        i += 1;
    }
    kept
}

/// Past `#[cfg(test)]` when it starts at `i`.
fn cfg_test_end(tokens: &[Token], i: usize) -> Option<usize> {
    let pattern = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let found = tokens.get(i..i + pattern.len())?;
    found
        .iter()
        .zip(&pattern)
        .all(|(token, tok)| token.tok == *tok)
        .then_some(i + pattern.len())
}

/// The end (one past its last token) of the item starting at `start`, and the module's name
/// when it is a module. Only items whose end is certain are recognised (not fields, match arms
/// or expressions under `#[cfg(test)]`, which are then checked as if they were not test code).
fn item_end(tokens: &[Token], start: usize) -> Option<(usize, Option<String>)> {
    let mut i = start;
    if ident(tokens, i) == Some("pub") {
        i += 1;
        if punct(tokens, i) == Some('(') {
            i = closing(tokens, i)? + 1;
        }
    }
    loop {
        match ident(tokens, i) {
            Some("unsafe" | "async" | "default") => i += 1,
            Some("const") if matches!(ident(tokens, i + 1), Some("fn" | "unsafe" | "async")) => {
                i += 1
            }
            Some("extern") if ident(tokens, i + 1) != Some("crate") => {
                i += 1;
                if matches!(tokens.get(i).map(|token| &token.tok), Some(Tok::Literal)) {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    let keyword = ident(tokens, i)?;
    if keyword == "mod" {
        let name = ident(tokens, i + 1)?.to_string();
        return match punct(tokens, i + 2)? {
            ';' => Some((i + 3, Some(name))),
            '{' => Some((closing(tokens, i + 2)? + 1, Some(name))),
            _ => None,
        };
    }
    // A body in braces ends these; the others end at their `;` (`const X: S = S { .. };`).
    let ends_at_brace = match keyword {
        "fn" | "impl" | "struct" | "enum" | "union" | "trait" | "macro_rules" | "extern" => true,
        "const" | "static" | "use" | "type" | "let" => false,
        _ => return None,
    };
    let mut j = i;
    while j < tokens.len() {
        match tokens[j].tok {
            Tok::Punct(';') => return Some((j + 1, None)),
            Tok::Punct('{') if ends_at_brace => return Some((closing(tokens, j)? + 1, None)),
            Tok::Punct('(' | '[' | '{') => j = closing(tokens, j)? + 1,
            Tok::Punct(')' | ']' | '}') => return None,
            _ => j += 1,
        }
    }
    None
}

/// What the checks need of a file's (non-test) code.
#[derive(Debug, Default)]
struct Scan {
    /// Modules declared (`mod x;`, `mod x { .. }`), as paths from the file's module (inline
    /// modules nest), and whether under `#[cfg(test)]`.
    mods: Vec<(Vec<String>, bool)>,
    /// Every `use` leaf and every path of two or more segments in code.
    paths: Vec<WrittenPath>,
    tokens: Vec<Token>,
}

fn scan(tokens: &[Token]) -> Scan {
    let mut scan = Scan::default();
    // Inline modules open, with the brace depth inside each.
    let mut inline: Vec<(usize, String)> = Vec::new();
    let scope = |inline: &[(usize, String)]| -> Vec<String> {
        inline.iter().map(|(_, name)| name.clone()).collect()
    };
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let line = tokens[i].line;
        match &tokens[i].tok {
            Tok::TestMod(name) => {
                let declared = [scope(&inline), vec![name.clone()]].concat();
                scan.mods.push((declared, true));
            }
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(inside, _)| *inside == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(keyword) if keyword == "mod" => {
                if let (Some(name), Some(after @ (';' | '{'))) =
                    (ident(tokens, i + 1), punct(tokens, i + 2))
                {
                    let declared = [scope(&inline), vec![name.to_string()]].concat();
                    scan.mods.push((declared, false));
                    if after == '{' {
                        inline.push((depth + 1, name.to_string()));
                    }
                    i += 2;
                    continue;
                }
            }
            // `use<'a>` is a precise-capturing bound, not an import.
            Tok::Ident(keyword) if keyword == "use" && punct(tokens, i + 1) != Some('<') => {
                let mut k = i + 1;
                let mut leaves = Vec::new();
                use_tree(tokens, &mut k, Vec::new(), false, &mut leaves);
                for leaf in leaves {
                    scan.paths.push(WrittenPath {
                        scope: scope(&inline),
                        segments: leaf.segments,
                        leading: leaf.leading,
                        from_use: true,
                        glob: leaf.glob,
                        binding: leaf.binding,
                        line: leaf.line,
                    });
                }
                while k < tokens.len() && punct(tokens, k) != Some(';') {
                    k += 1;
                }
                i = k.max(i + 1);
                continue;
            }
            Tok::Ident(_) if is_sep(tokens, i + 1) && ident(tokens, i + 2).is_some() => {
                let mut end = i;
                while is_sep(tokens, end + 1) && ident(tokens, end + 2).is_some() {
                    end += 2;
                }
                if let Some(leading) = path_start(tokens, i) {
                    let segments = (i..=end)
                        .step_by(2)
                        .filter_map(|k| ident(tokens, k).map(str::to_string))
                        .collect();
                    scan.paths.push(WrittenPath {
                        scope: scope(&inline),
                        segments,
                        leading,
                        from_use: false,
                        glob: false,
                        binding: None,
                        line,
                    });
                }
                i = end + 1;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    scan.tokens = tokens.to_vec();
    scan
}

/// Whether a path in code starts at `i` (not after a `.` or a `>::`), and whether with a
/// leading `::`; `None` for a visibility, `pub(in crate::a)`, which imports nothing.
fn path_start(tokens: &[Token], i: usize) -> Option<bool> {
    let before = |back: usize| i.checked_sub(back).map(|k| &tokens[k].tok);
    match before(1) {
        Some(Tok::Punct('.')) => None,
        Some(Tok::PathSep) => match before(2) {
            Some(Tok::Ident(_) | Tok::Punct('>' | ')')) => None,
            _ => Some(true),
        },
        Some(Tok::Ident(word)) if word == "in" => {
            let visibility = matches!(before(2), Some(Tok::Punct('(')))
                && matches!(before(3), Some(Tok::Ident(word)) if word == "pub");
            (!visibility).then_some(false)
        }
        _ => Some(false),
    }
}

/// A leaf of a use tree, as in [`WrittenPath`].
struct UseLeaf {
    segments: Vec<String>,
    leading: bool,
    glob: bool,
    binding: Option<String>,
    /// The line of its last segment, where a group spans several.
    line: usize,
}

/// Expands the use tree at `k` (after `use`, or inside a group) into its leaves.
fn use_tree(
    tokens: &[Token],
    k: &mut usize,
    mut path: Vec<String>,
    mut leading: bool,
    leaves: &mut Vec<UseLeaf>,
) {
    loop {
        match tokens.get(*k).map(|token| &token.tok) {
            Some(Tok::PathSep) => {
                leading |= path.is_empty();
                *k += 1;
            }
            Some(Tok::Punct('{')) => {
                *k += 1;
                loop {
                    match tokens.get(*k).map(|token| &token.tok) {
                        None | Some(Tok::Punct(';')) => return,
                        Some(Tok::Punct('}')) => {
                            *k += 1;
                            return;
                        }
                        Some(Tok::Punct(',')) => *k += 1,
                        _ => {
                            let before = *k;
                            use_tree(tokens, k, path.clone(), leading, leaves);
                            if *k == before {
                                *k += 1;
                            }
                        }
                    }
                }
            }
            // `$crate` in a macro is this crate.
            Some(Tok::Punct('$')) if path.is_empty() => *k += 1,
            Some(Tok::Punct('*')) => {
                leaves.push(UseLeaf {
                    segments: path,
                    leading,
                    glob: true,
                    binding: None,
                    line: tokens[*k].line,
                });
                *k += 1;
                return;
            }
            Some(Tok::Ident(name)) => {
                let line = tokens[*k].line;
                path.push(name.clone());
                *k += 1;
                if is_sep(tokens, *k) {
                    *k += 1;
                    continue;
                }
                // `a::{self}` is `a` itself.
                if path.len() > 1 && path.last().is_some_and(|last| last == "self") {
                    path.pop();
                }
                let mut binding = path.last().cloned();
                if ident(tokens, *k) == Some("as") {
                    binding = ident(tokens, *k + 1).map(str::to_string);
                    *k += 2;
                }
                let binding = binding
                    .filter(|name| !matches!(name.as_str(), "_" | "self" | "super" | "crate"));
                leaves.push(UseLeaf {
                    segments: path,
                    leading,
                    glob: false,
                    binding,
                    line,
                });
                return;
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(files: &[(&str, &str)]) -> Vec<String> {
        check(files).iter().map(Violation::to_string).collect()
    }

    /// Violations of `file` that contain `needle`.
    fn find<'a>(found: &'a [String], file: &str, needle: &str) -> Vec<&'a str> {
        found
            .iter()
            .filter(|line| line.starts_with(&format!("{file}: ")) && line.contains(needle))
            .map(String::as_str)
            .collect()
    }

    fn assert_found(found: &[String], file: &str, needle: &str) {
        assert!(
            !find(found, file, needle).is_empty(),
            "no violation of {file} with {needle:?} in:\n{}",
            found.join("\n")
        );
    }

    fn assert_clean(files: &[(&str, &str)]) {
        let found = messages(files);
        assert!(found.is_empty(), "unexpected:\n{}", found.join("\n"));
    }

    /// The known problems of the flat tree as it was before the move into layers, in a
    /// miniature of it: each file imports what the real one did.
    #[test]
    fn flat_tree_known_problems() {
        let tree = [
            (
                "lib.rs",
                "//! Library.\npub mod aggregate;\npub mod census;\npub mod cli;\n\
                 pub mod commands;\npub mod diag;\npub mod live_census;\npub mod state;\n",
            ),
            (
                "main.rs",
                "//! Binary.\nuse tcptrace::{cli::Cli, commands};\n\
                 fn main() { commands::states::run(); }\n",
            ),
            ("cli.rs", "//! Arguments.\npub struct StatesArgs;\n"),
            ("state.rs", "//! States.\npub enum TcpState {}\n"),
            (
                "aggregate/mod.rs",
                "//! Aggregation.\npub mod kernel_counters;\npub mod signatures;\n\
                 pub mod sockets;\n#[cfg(test)]\nmod tests;\n\
                 use self::{signatures::Signatures, sockets::{FastHash, Sockets}};\n",
            ),
            (
                "aggregate/signatures.rs",
                "//! Signatures.\nuse super::{\n    sockets::FastHash,\n};\n\
                 use crate::state::TcpState;\n",
            ),
            (
                "aggregate/sockets.rs",
                "//! Sockets.\nuse super::signatures::PathKey;\nuse crate::state::TcpState;\n\
                 pub struct FastHash;\n",
            ),
            (
                "aggregate/kernel_counters.rs",
                "//! Kernel counters.\nuse std::{fs, io};\n\
                 pub fn read() -> io::Result<String> {\n    \
                 fs::read_to_string(\"/proc/net/snmp\")\n}\n",
            ),
            (
                "aggregate/tests.rs",
                "//! Aggregator tests.\nuse super::*;\nuse crate::commands::states::run;\n",
            ),
            (
                "census.rs",
                "//! Census.\nuse crate::{\n    diag::SocketEntry,\n    \
                 live_census::CloseWaitAges,\n    state::TcpState,\n};\n",
            ),
            (
                "live_census.rs",
                "//! Live census.\nuse crate::{\n    census::{Counts, SHOWN},\n    \
                 state::TcpState,\n};\n",
            ),
            ("diag/mod.rs", "//! Diag.\npub fn ensure_own_netns() {}\n"),
            (
                "commands/mod.rs",
                "//! Commands.\npub mod sockets;\npub mod states;\n",
            ),
            (
                "commands/sockets.rs",
                "//! Sockets command.\npub fn selection() {}\n",
            ),
            (
                "commands/states.rs",
                "//! States command.\nuse std::{\n    collections::HashSet,\n    fs,\n};\n\
                 use crate::{\n    aggregate::kernel_counters,\n    census::Census,\n    \
                 cli::StatesArgs,\n    commands::sockets::{selected_snapshot, selection},\n};\n\
                 fn port_range() {\n    \
                 fs::read_to_string(\"/proc/sys/net/ipv4/ip_local_port_range\");\n}\n\
                 pub fn run() {\n    crate::diag::ensure_own_netns();\n}\n",
            ),
        ];
        let found = messages(&tree);
        assert_found(
            &found,
            "aggregate/signatures.rs",
            "import cycle between aggregate/signatures.rs, aggregate/sockets.rs:",
        );
        assert_found(
            &found,
            "census.rs",
            "import cycle between census.rs, live_census.rs:",
        );
        assert_found(
            &found,
            "commands/states.rs",
            "imports commands/sockets.rs (`crate::commands::sockets::selected_snapshot`, \
             line 10): a command imports no other file of commands/",
        );
        assert_found(
            &found,
            "aggregate/kernel_counters.rs",
            "opens files or sockets outside kernel/ and os/: `fs::` (line 4), \
             `read_to_string(` (line 4), `std::fs` (line 2)",
        );
        assert_found(&found, "commands/states.rs", "opens files or sockets");
        for file in ["census.rs", "live_census.rs", "state.rs"] {
            assert_found(&found, file, "belongs in a layer folder");
        }
        assert_found(&found, "diag/mod.rs", "diag/ is not a layer folder");
        // cli.rs, lib.rs and main.rs are where they belong; the test-only file is left alone.
        for file in ["cli.rs", "lib.rs", "main.rs", "aggregate/tests.rs"] {
            assert!(find(&found, file, "").is_empty(), "{file}: {found:#?}");
        }
    }

    #[test]
    fn module_paths() {
        assert_eq!(module_of("lib.rs"), Vec::<String>::new());
        assert_eq!(module_of("main.rs"), Vec::<String>::new());
        assert_eq!(module_of("a/b.rs"), ["a", "b"]);
        assert_eq!(module_of("a/b/mod.rs"), ["a", "b"]);
    }

    /// The edges of a tree, as `from -> to` pairs of paths.
    fn edges_of(files: &[(&str, &str)]) -> Vec<String> {
        let tree = Tree::new(files);
        tree.edges()
            .keys()
            .map(|&(from, to)| format!("{} -> {}", tree.sources[from].path, tree.sources[to].path))
            .collect()
    }

    #[test]
    fn imports_resolve_to_the_deepest_existing_module() {
        let tree = [
            ("lib.rs", "//! Root.\npub mod aggregate;\npub mod x;\n"),
            (
                "aggregate/mod.rs",
                "//! A.\npub mod sockets;\npub struct Snapshot;\n",
            ),
            ("aggregate/sockets.rs", "//! S.\npub struct FastHash;\n"),
            (
                "x.rs",
                "//! X.\nuse crate::aggregate::sockets::FastHash;\n\
                 use crate::aggregate::Snapshot;\n",
            ),
        ];
        assert_eq!(
            edges_of(&tree),
            ["x.rs -> aggregate/mod.rs", "x.rs -> aggregate/sockets.rs"]
        );
    }

    #[test]
    fn every_form_of_path_is_an_edge() {
        let tree = [
            ("lib.rs", "//! Root.\n"),
            ("a/mod.rs", "//! A.\n"),
            ("a/b.rs", "//! B.\n"),
            ("a/c.rs", "//! C.\n"),
            ("a/d/mod.rs", "//! D.\n"),
            ("f.rs", "//! F.\n"),
            ("g.rs", "//! G.\n"),
            ("h.rs", "//! H.\n"),
            (
                // Nested groups, `self` in a group, an inline path, `super::super`.
                "a/d/e.rs",
                "//! E.\nuse crate::{a::{b, c::C}, f};\nuse super::super::b::B;\n\
                 fn x() { crate::g::run(); }\npub use crate::h::{self};\n",
            ),
        ];
        assert_eq!(
            edges_of(&tree),
            [
                "a/d/e.rs -> a/b.rs",
                "a/d/e.rs -> a/c.rs",
                "a/d/e.rs -> f.rs",
                "a/d/e.rs -> g.rs",
                "a/d/e.rs -> h.rs",
            ]
        );
        let tree = [
            ("lib.rs", "//! Root.\n"),
            (
                "a/mod.rs",
                "//! A.\npub mod b;\nmod c;\nuse self::b::B;\nfn f() { super::x::y(); }\n",
            ),
            ("a/b.rs", "//! B.\nuse super::Thing;\n"),
            ("a/c.rs", "//! C.\n"),
            ("x.rs", "//! X.\n"),
        ];
        // `mod c;` is no edge; `super::Thing` from a/b.rs is a/mod.rs.
        assert_eq!(
            edges_of(&tree),
            [
                "a/mod.rs -> a/b.rs",
                "a/mod.rs -> x.rs",
                "a/b.rs -> a/mod.rs"
            ]
        );
    }

    #[test]
    fn macros_visibilities_and_inline_modules() {
        let tree = [
            ("lib.rs", "//! Root.\n"),
            ("core/mod.rs", "//! Core.\n"),
            (
                "core/a.rs",
                "//! A.\nmacro_rules! m {\n    \
                 () => { use $crate::core::b::B; $crate::core::c::f() };\n}\n\
                 pub(in crate::core) fn g() {}\n\
                 mod inner {\n    use super::super::d::D;\n    fn h() { self::k(); }\n}\n",
            ),
            ("core/b.rs", "//! B.\n"),
            ("core/c.rs", "//! C.\n"),
            ("core/d.rs", "//! D.\n"),
        ];
        // `pub(in crate::core)` imports nothing; `super` in `mod inner` is core/a.rs's module.
        assert_eq!(
            edges_of(&tree),
            [
                "core/a.rs -> core/b.rs",
                "core/a.rs -> core/c.rs",
                "core/a.rs -> core/d.rs",
            ]
        );
    }

    #[test]
    fn names_bound_by_imports_and_declarations_are_followed() {
        let tree = [
            ("lib.rs", "//! Root.\npub mod a;\npub mod b;\n"),
            ("a/mod.rs", "//! A.\npub mod x;\npub mod y;\n"),
            ("a/x.rs", "//! X.\n"),
            ("a/y.rs", "//! Y.\n"),
            (
                "b.rs",
                "//! B.\nuse crate::a;\nuse a::y as why;\nfn f() { a::x::run(); why::g(); }\n",
            ),
        ];
        assert_eq!(
            edges_of(&tree),
            ["b.rs -> a/mod.rs", "b.rs -> a/x.rs", "b.rs -> a/y.rs",]
        );
    }

    #[test]
    fn main_reaches_the_library_as_tcptrace() {
        let tree = [
            ("lib.rs", "//! Root.\npub mod cli;\npub mod commands;\n"),
            (
                "main.rs",
                "//! Main.\nuse tcptrace::{cli::Cli, commands};\n\
             fn main() { commands::trace::run(); ::tcptrace::cli::parse(); }\n",
            ),
            ("cli.rs", "//! Cli.\n"),
            ("commands/mod.rs", "//! Commands.\npub mod trace;\n"),
            (
                "commands/trace.rs",
                "//! Trace.\nuse crate::cli::TraceArgs;\n",
            ),
        ];
        assert_eq!(
            edges_of(&tree),
            [
                "main.rs -> cli.rs",
                "main.rs -> commands/mod.rs",
                "main.rs -> commands/trace.rs",
                "commands/trace.rs -> cli.rs",
            ]
        );
        assert_clean(&tree);
    }

    #[test]
    fn test_code_imports_anything() {
        let tree = [
            ("lib.rs", "//! Root.\npub mod core;\npub mod render;\n"),
            (
                "core/mod.rs",
                "//! Core.\npub mod x;\n#[cfg(test)] mod tests;\n\
                 #[cfg(test)]\n#[allow(dead_code)]\nmod golden;\n\
                 #[cfg(test)]\nimpl X { fn f() { crate::render::g(); } }\n\
                 #[cfg(test)]\nfn helper() -> u8 { let _ = std::fs::read(\"x\"); 1 }\n\
                 #[cfg(test)]\nuse crate::render::Y;\n\
                 pub struct X;\n\
                 #[cfg(test)]\nmod inline {\n    use crate::render::Z;\n    \
                 fn f() { std::fs::read_to_string(\"a\"); }\n}\n",
            ),
            ("core/x.rs", "//! X.\n"),
            (
                "core/tests.rs",
                "//! Tests.\nuse crate::render::T;\nuse std::fs;\n",
            ),
            ("core/golden.rs", "//! Golden.\nuse crate::render::T;\n"),
            ("core/golden/data.rs", "//! Data.\nuse crate::render::T;\n"),
            ("render/mod.rs", "//! Render.\nuse crate::core::X;\n"),
        ];
        assert_clean(&tree);
        // Code after a test module is checked again.
        let tree = [
            ("lib.rs", "//! Root.\n"),
            (
                "core/mod.rs",
                "//! Core.\n#[cfg(test)]\nmod tests {\n    use crate::render::T;\n}\n\
                 use crate::render::U;\n",
            ),
            ("render/mod.rs", "//! Render.\n"),
        ];
        assert_eq!(
            messages(&tree),
            [
                "core/mod.rs: imports render/mod.rs (`crate::render::U`, line 6): core/ (rank 0) \
                 may import only its own folder and lower ranks, and render/ is rank 3"
            ]
        );
    }

    #[test]
    fn layers_import_their_own_folder_and_lower_ranks_only() {
        let layered = |from: &str, import: &str| {
            vec![
                ("lib.rs".to_string(), "//! Root.\n".to_string()),
                (
                    from.to_string(),
                    format!("//! From.\nuse crate::{import}::Item;\n"),
                ),
                (
                    format!("{}/mod.rs", import.replace("::", "/")),
                    "//! To.\n".to_string(),
                ),
            ]
        };
        let violations = |from: &str, import: &str| {
            let files = layered(from, import);
            let files: Vec<_> = files
                .iter()
                .map(|(p, t)| (p.as_str(), t.as_str()))
                .collect();
            messages(&files)
        };
        for (from, import) in [
            ("kernel/probe.rs", "os"),
            ("os/netlink.rs", "kernel"),
            ("aggregate/x.rs", "census"),
            ("census/x.rs", "aggregate"),
            ("render/x.rs", "stream"),
            ("core/x.rs", "kernel"),
            ("aggregate/x.rs", "render"),
            ("commands/x.rs", "commands::y"),
        ] {
            let found = violations(from, import);
            let expected = if from.starts_with("commands") {
                "a command imports no other file"
            } else {
                "may import only its own folder and lower ranks"
            };
            assert!(
                found.iter().any(|line| line.contains(expected)),
                "{from} importing {import}: {found:#?}"
            );
        }
        for (from, import) in [
            ("core/a.rs", "core::b"),
            ("kernel/probe.rs", "core"),
            ("os/netlink.rs", "core"),
            ("aggregate/x.rs", "kernel"),
            ("stream/x.rs", "census"),
            ("commands/x.rs", "render"),
            ("commands/x.rs", "stream"),
            ("main.rs", "commands"),
            ("render/a/b.rs", "render::c"),
        ] {
            let found = violations(from, import);
            assert!(found.is_empty(), "{from} importing {import}: {found:#?}");
        }
        // cli.rs sits above the layers it configures and below the commands.
        let tree = [
            ("lib.rs", "//! Root.\n"),
            (
                "cli.rs",
                "//! Cli.\nuse crate::commands::Thing;\nuse crate::stream::Config;\n",
            ),
            ("commands/mod.rs", "//! Commands.\nuse crate::cli::Args;\n"),
            ("stream/mod.rs", "//! Stream.\n"),
        ];
        let found = messages(&tree);
        assert_found(&found, "cli.rs", "imports commands/mod.rs");
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_found(
            &found,
            "cli.rs",
            "import cycle between cli.rs, commands/mod.rs",
        );
    }

    #[test]
    fn files_outside_layers() {
        let found = messages(&[
            ("lib.rs", "//! Root.\n"),
            ("main.rs", "//! Main.\n"),
            ("cli.rs", "//! Cli.\n"),
            ("kernel.rs", "//! A layer's root is its mod.rs.\n"),
            ("probe.rs", "//! Probe.\n"),
            ("diag/netlink.rs", "//! Netlink.\n"),
        ]);
        assert_eq!(
            found,
            [
                "diag/netlink.rs: diag/ is not a layer folder (core, kernel, os, aggregate, \
                 census, render, stream, commands)",
                "kernel.rs: belongs in a layer folder (core, kernel, os, aggregate, census, \
                 render, stream, commands)",
                "probe.rs: belongs in a layer folder (core, kernel, os, aggregate, census, \
                 render, stream, commands)",
            ]
        );
    }

    #[test]
    fn no_command_imports_another_in_any_form() {
        for (written, needle) in [
            (
                "use crate::commands::sockets::selection;",
                "commands/sockets/mod.rs",
            ),
            (
                "use crate::{cli::Args, commands::sockets::{selection, snapshot}};",
                "commands/sockets/mod.rs",
            ),
            (
                "fn f() { crate::commands::sockets::selection(); }",
                "commands/sockets/mod.rs",
            ),
            ("use super::sockets::selection;", "commands/sockets/mod.rs"),
            (
                "fn f() { super::sockets::selection(); }",
                "commands/sockets/mod.rs",
            ),
            (
                "use crate::commands;\nfn f() { commands::sockets::selection(); }",
                "commands/sockets/mod.rs",
            ),
            (
                "use super::*;\nfn f() { sockets::selection(); }",
                "commands/sockets/mod.rs",
            ),
            (
                "use crate::commands::sockets::helpers::x;",
                "commands/sockets/helpers.rs",
            ),
            ("use super::Shared;", "commands/mod.rs"),
        ] {
            let states = format!("//! States.\n{written}\n");
            let found = messages(&[
                ("lib.rs", "//! Root.\n"),
                ("cli.rs", "//! Cli.\n"),
                (
                    "commands/mod.rs",
                    "//! Commands.\npub mod sockets;\npub mod states;\n",
                ),
                (
                    "commands/sockets/mod.rs",
                    "//! Sockets.\npub mod helpers;\n",
                ),
                (
                    "commands/sockets/helpers.rs",
                    "//! Helpers.\nuse super::Sockets;\n",
                ),
                ("commands/states.rs", &states),
            ]);
            let lines = find(
                &found,
                "commands/states.rs",
                "a command imports no other file",
            );
            assert!(
                lines
                    .iter()
                    .any(|line| line.contains(&format!("imports {needle} "))),
                "{written}: {found:#?}"
            );
            // A command's own submodules are the command.
            assert!(find(&found, "commands/sockets/helpers.rs", "").is_empty());
        }
    }

    #[test]
    fn only_the_edges_open_files_or_sockets() {
        let opening = "//! Opens.\nuse std::fs::File;\nuse std::net::{TcpListener, UdpSocket};\n\
                       fn f() {\n    let _ = File::open(\"x\");\n    \
                       let _ = std::fs::OpenOptions::new();\n    \
                       let _ = unsafe { libc::socket(1, 2, 3) };\n    \
                       let _ = std::io::stdin().read_to_string(&mut s);\n    \
                       let _ = tokio::net::UnixStream::connect(\"p\");\n}\n";
        for path in ["kernel/probe.rs", "os/netlink.rs", "os/proc/snmp.rs"] {
            assert_clean(&[("lib.rs", "//! Root.\n"), (path, opening)]);
        }
        let found = messages(&[("lib.rs", "//! Root.\n"), ("render/x.rs", opening)]);
        assert_eq!(
            found,
            [
                "render/x.rs: opens files or sockets outside kernel/ and os/: `File::` (line 5), \
                 `OpenOptions` (line 6), `TcpListener` (line 3), `UdpSocket` (line 3), \
                 `UnixStream` (line 9), `libc::socket` (line 7), `read_to_string(` (line 8), \
                 `std::fs` (lines 2, 6)"
            ]
        );
        let found = messages(&[
            ("lib.rs", "//! Root.\n"),
            (
                "core/x.rs",
                "//! Core.\nuse std::{io, fs as files};\nuse libc::{open, O_RDONLY};\n\
                 fn f() { let dir = fs::read_dir(\"/\"); }\n",
            ),
        ]);
        assert_eq!(
            found,
            [
                "core/x.rs: opens files or sockets outside kernel/ and os/: `fs::` (line 4), \
                 `libc::open` (line 3), `read_dir(` (line 4), `std::fs` (line 2)"
            ]
        );
        // Words in comments and strings, and names that merely contain the words, open nothing.
        assert_clean(&[
            ("lib.rs", "//! Root.\n"),
            (
                "render/x.rs",
                "//! Says `std::fs` and File::open in prose.\n\
                 // fs::read_to_string(\"/proc\") would be wrong here\n\
                 /* nested /* File::create */ TcpStream */\n\
                 const HELP: &str = \"reads with fs::read(path) and a TcpStream\";\n\
                 const RAW: &str = r#\"a \"quoted\" File::open\"#;\n\
                 fn f<'a>(c: char, s: &'a str) -> bool {\n    \
                 let q = '\"'; let fs_count = 1; let profile = Profile::new();\n    \
                 c == '\\'' && s.is_empty() && is_read_dir(q)\n}\n",
            ),
        ]);
    }

    #[test]
    fn every_file_says_what_it_is_for() {
        let found = messages(&[
            ("lib.rs", "//! Root.\n"),
            ("core/a.rs", "\n//! Leading blank lines are fine.\n"),
            ("core/b.rs", "/// An item's doc comment.\nfn f() {}\n"),
            ("core/c.rs", "//!\n//!   \nfn f() {}\n"),
            ("core/d.rs", ""),
            ("core/e.rs", "// A plain comment.\n"),
        ]);
        assert_eq!(
            found,
            [
                "core/b.rs: does not open with a `//!` comment saying what it is for",
                "core/c.rs: opens with an empty `//!` comment: say what the file is for",
                "core/d.rs: is empty: it should open with a `//!` comment saying what it is for",
                "core/e.rs: does not open with a `//!` comment saying what it is for",
            ]
        );
    }

    #[test]
    fn cycles_are_strongly_connected_components() {
        let found = messages(&[
            ("lib.rs", "//! Root.\n"),
            ("core/a.rs", "//! A.\nuse crate::core::b::B;\n"),
            ("core/b.rs", "//! B.\nuse crate::core::c::C;\n"),
            (
                "core/c.rs",
                "//! C.\nuse crate::core::a::A;\nuse crate::core::d::D;\n",
            ),
            ("core/d.rs", "//! D.\n"),
            ("core/e.rs", "//! E.\nuse super::f::F;\n"),
            ("core/f.rs", "//! F.\nfn g() { super::e::h(); }\n"),
        ]);
        assert_eq!(
            found,
            [
                "core/a.rs: import cycle between core/a.rs, core/b.rs, core/c.rs: \
                 core/a.rs -> core/b.rs (line 2), core/b.rs -> core/c.rs (line 2), \
                 core/c.rs -> core/a.rs (line 2)",
                "core/e.rs: import cycle between core/e.rs, core/f.rs: \
                 core/e.rs -> core/f.rs (line 2), core/f.rs -> core/e.rs (line 2)",
            ]
        );
    }

    #[test]
    fn a_layered_tree_is_clean() {
        assert_clean(&[
            (
                "lib.rs",
                "//! Root.\npub mod core;\npub mod kernel;\npub mod commands;\n",
            ),
            (
                "main.rs",
                "//! Main.\nuse tcptrace::commands;\nfn main() { commands::run(); }\n",
            ),
            ("cli.rs", "//! Cli.\nuse crate::core::state::TcpState;\n"),
            ("core/mod.rs", "//! Core.\npub mod state;\n"),
            ("core/state.rs", "//! States.\npub enum TcpState {}\n"),
            (
                "kernel/mod.rs",
                "//! Kernel.\nuse std::fs;\nuse crate::core::state::TcpState;\n\
                 pub fn read() { fs::read_to_string(\"/proc/net/snmp\"); }\n",
            ),
            (
                "commands/mod.rs",
                "//! Commands.\npub mod a;\npub use self::a::run;\n",
            ),
            (
                "commands/a.rs",
                "//! A.\nuse crate::{cli, core::state::TcpState, kernel};\n\
                 pub fn run() { kernel::read(); }\n",
            ),
        ]);
    }

    #[test]
    fn lexer_skips_comments_and_literals() {
        let tokens = lex(
            "a /* b /* c */ d */ e // f\n\"g\\\"h\" r##\"i\"#j\"## b'k' '\\n' 'l \
             br\"m\" c\"n\" 1.5 x.0 r#type\n::",
        );
        let toks: Vec<_> = tokens
            .iter()
            .map(|token| (token.tok.clone(), token.line))
            .collect();
        let id = |name: &str| Tok::Ident(name.into());
        assert_eq!(
            toks,
            [
                (id("a"), 1),
                (id("e"), 1),
                (Tok::Literal, 2),
                (Tok::Literal, 2),
                (Tok::Literal, 2),
                (Tok::Literal, 2),
                (Tok::Lifetime, 2),
                (Tok::Literal, 2),
                (Tok::Literal, 2),
                (Tok::Literal, 2),
                (id("x"), 2),
                (Tok::Punct('.'), 2),
                (Tok::Literal, 2),
                (id("type"), 2),
                (Tok::PathSep, 3),
            ]
        );
        // Lines are counted inside multi-line comments and strings.
        let tokens = lex("/* a\n b */ \"c\nd\" r\"e\nf\" g");
        assert_eq!(tokens.last().map(|token| token.line), Some(4));
    }
}
