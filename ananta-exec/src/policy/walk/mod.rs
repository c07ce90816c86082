//! Parses a script with `brush-parser` and collects every simple command it can run, with
//! wrappers removed and `bash -c` / `eval` strings and substitutions parsed in turn.

use std::collections::HashSet;

use brush_parser::ast;

mod commands;
mod words;

/// Longest script looked at; longer ones are refused as unparseable.
pub(crate) const MAX_SCRIPT_BYTES: usize = 256 * 1024;
/// Deepest bracket nesting accepted before parsing (the parser recurses on nesting).
pub(crate) const MAX_NESTING: usize = 48;
/// Deepest chain of nested scripts (`$(…)` inside `bash -c` inside `eval` …).
const MAX_NESTED_SCRIPTS: usize = 8;
/// Deepest AST recursion of the walk itself.
const MAX_WALK_DEPTH: usize = 256;

/// One shell word after quote removal, with expansions kept as their source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WordInfo {
    /// Quote-removed text; `$HOME` / `${HOME}` become `~`; other expansions keep their source.
    pub text: String,
    /// No expansion at all (parameter, command substitution, arithmetic, brace, odd tilde).
    pub literal: bool,
    /// Unquoted glob characters (`*`, `?`, `[`).
    pub glob: bool,
}

impl WordInfo {
    fn literal(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            literal: true,
            glob: false,
        }
    }
}

/// Direction of a redirection that names a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedirKind {
    Read,
    Write,
}

/// A redirection to or from a path.
#[derive(Debug, Clone)]
pub(crate) struct Redir {
    pub kind: RedirKind,
    pub target: WordInfo,
}

/// A simple command as it will run.
#[derive(Debug, Clone, Default)]
pub(crate) struct SimpleCmd {
    /// Words after wrappers were removed; may be empty (assignments or redirections only).
    pub words: Vec<WordInfo>,
    /// The words as written, wrappers included, for messages.
    pub display: String,
    /// Names assigned (`A=1 cmd`, `env A=1 cmd`, `export A=1`).
    pub assignments: Vec<String>,
    pub redirects: Vec<Redir>,
    /// Standard input comes from a pipe (or xargs feeds it arguments).
    pub piped_in: bool,
    /// Run by `xargs` with unknown extra arguments.
    pub xargs: bool,
    /// Calls a function defined in the script (whose body is judged on its own).
    pub calls_function: bool,
}

/// A structural finding that is not tied to one simple command's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    Ask(String),
    Deny { rule: String, reason: String },
}

/// Everything the walk found in a script.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    pub commands: Vec<SimpleCmd>,
    /// Command names of the stages of each pipeline with more than one stage (`None` for a
    /// stage that is not a simple command or whose name is not literal).
    pub pipelines: Vec<Vec<Option<String>>>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Ctx {
    piped_in: bool,
    in_pipeline: bool,
    background: bool,
}

/// Parses and walks a script. `Err` carries why the script cannot be analysed.
pub(crate) fn analyze(script: &str) -> Result<Analysis, String> {
    if script.trim().is_empty() {
        return Err("empty script".into());
    }
    if script.contains('\0') {
        return Err("script contains a NUL byte".into());
    }
    if script.len() > MAX_SCRIPT_BYTES {
        return Err(format!("script longer than {MAX_SCRIPT_BYTES} bytes"));
    }
    let mut walker = Walker {
        analysis: Analysis::default(),
        functions: HashSet::new(),
        current_functions: Vec::new(),
        nested: 0,
        depth: 0,
        error: None,
    };
    walker.script(script);
    if let Some(e) = walker.error {
        return Err(e);
    }
    let mut analysis = walker.analysis;
    for cmd in &mut analysis.commands {
        if let Some(first) = cmd.words.first()
            && first.literal
            && !first.glob
            && walker.functions.contains(&first.text)
        {
            cmd.calls_function = true;
        }
    }
    Ok(analysis)
}

/// The deepest bracket nesting of a text, counting `(`/`{` against `)`/`}` and shell keywords
/// that open and close blocks, ignoring quotes (so it over-counts, never under-counts much).
fn nesting(script: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in script.chars() {
        match c {
            '(' | '{' | '[' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let mut kw = 0usize;
    for token in script.split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|') {
        match token {
            "if" | "case" | "while" | "until" | "for" | "select" | "!" | "function" => {
                kw += 1;
                max = max.max(depth + kw);
            }
            "fi" | "esac" | "done" => kw = kw.saturating_sub(1),
            _ => {}
        }
    }
    max.max(kw)
}

struct Walker {
    analysis: Analysis,
    functions: HashSet<String>,
    current_functions: Vec<String>,
    nested: usize,
    depth: usize,
    error: Option<String>,
}

fn options() -> brush_parser::ParserOptions {
    brush_parser::ParserOptions::default()
}

fn basename(text: &str) -> &str {
    text.rsplit('/').next().unwrap_or(text)
}

fn is_assignment(text: &str) -> bool {
    match text.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "rbash", "fish",
];

impl Walker {
    pub(super) fn fail(&mut self, why: String) {
        if self.error.is_none() {
            self.error = Some(why);
        }
    }

    /// Parses and walks one script (the top level or a nested string).
    pub(super) fn script(&mut self, text: &str) {
        if self.error.is_some() {
            return;
        }
        if self.nested >= MAX_NESTED_SCRIPTS {
            self.fail("scripts nested too deeply".into());
            return;
        }
        if nesting(text) > MAX_NESTING {
            self.fail(format!("nesting deeper than {MAX_NESTING} levels"));
            return;
        }
        let mut parser = brush_parser::Parser::new(text.as_bytes(), &options());
        let program = match parser.parse_program() {
            Ok(p) => p,
            Err(e) => {
                self.fail(format!("syntax error: {e}"));
                return;
            }
        };
        self.nested += 1;
        for complete in &program.complete_commands {
            self.compound_list(complete);
        }
        self.nested -= 1;
    }

    pub(super) fn compound_list(&mut self, list: &ast::CompoundList) {
        for ast::CompoundListItem(and_or, sep) in &list.0 {
            let background = matches!(sep, ast::SeparatorOperator::Async);
            self.pipeline(&and_or.first, background);
            for next in &and_or.additional {
                match next {
                    ast::AndOr::And(p) | ast::AndOr::Or(p) => self.pipeline(p, background),
                }
            }
        }
    }

    pub(super) fn enter(&mut self) -> bool {
        self.depth += 1;
        if self.depth > MAX_WALK_DEPTH {
            self.fail("syntax tree nested too deeply".into());
        }
        self.error.is_none()
    }

    pub(super) fn pipeline(&mut self, pipeline: &ast::Pipeline, background: bool) {
        if !self.enter() {
            self.depth -= 1;
            return;
        }
        let in_pipeline = pipeline.seq.len() > 1;
        let mut names = Vec::new();
        for (i, command) in pipeline.seq.iter().enumerate() {
            let ctx = Ctx {
                piped_in: i > 0,
                in_pipeline,
                background,
            };
            names.push(self.command(command, ctx));
        }
        if in_pipeline {
            self.analysis.pipelines.push(names);
        }
        self.depth -= 1;
    }

    /// Walks one command; returns its name when it is a simple command with a literal name.
    pub(super) fn command(&mut self, command: &ast::Command, ctx: Ctx) -> Option<String> {
        if !self.enter() {
            self.depth -= 1;
            return None;
        }
        let name = match command {
            ast::Command::Simple(simple) => self.simple(simple, ctx),
            ast::Command::Compound(compound, redirects) => {
                self.compound(compound, ctx);
                self.redirect_list(redirects.as_ref(), ctx);
                None
            }
            ast::Command::Function(def) => {
                let fname = def.fname.value.clone();
                self.functions.insert(fname.clone());
                self.current_functions.push(fname);
                self.compound(&def.body.0, Ctx::default());
                self.redirect_list(def.body.1.as_ref(), Ctx::default());
                self.current_functions.pop();
                None
            }
            ast::Command::ExtendedTest(test, redirects) => {
                self.extended_test(&test.expr);
                self.redirect_list(redirects.as_ref(), ctx);
                None
            }
        };
        self.depth -= 1;
        name
    }

    fn redirect_list(&mut self, redirects: Option<&ast::RedirectList>, ctx: Ctx) {
        let Some(list) = redirects else { return };
        let mut cmd = SimpleCmd {
            piped_in: ctx.piped_in,
            ..SimpleCmd::default()
        };
        for r in &list.0 {
            if let Some(redir) = self.redirect(r) {
                cmd.redirects.push(redir);
            }
        }
        if !cmd.redirects.is_empty() {
            cmd.display = "(redirection of a compound command)".into();
            self.analysis.commands.push(cmd);
        }
    }

    fn extended_test(&mut self, expr: &ast::ExtendedTestExpr) {
        if !self.enter() {
            self.depth -= 1;
            return;
        }
        match expr {
            ast::ExtendedTestExpr::And(a, b) | ast::ExtendedTestExpr::Or(a, b) => {
                self.extended_test(a);
                self.extended_test(b);
            }
            ast::ExtendedTestExpr::Not(a) | ast::ExtendedTestExpr::Parenthesized(a) => {
                self.extended_test(a)
            }
            ast::ExtendedTestExpr::UnaryTest(_, w) => {
                self.word(&w.value);
            }
            ast::ExtendedTestExpr::BinaryTest(_, a, b) => {
                self.word(&a.value);
                self.word(&b.value);
            }
        }
        self.depth -= 1;
    }

    fn compound(&mut self, compound: &ast::CompoundCommand, ctx: Ctx) {
        if !self.enter() {
            self.depth -= 1;
            return;
        }
        match compound {
            ast::CompoundCommand::Arithmetic(a) => self.arithmetic(&a.expr.value),
            ast::CompoundCommand::ArithmeticForClause(f) => {
                for e in [&f.initializer, &f.condition, &f.updater]
                    .into_iter()
                    .flatten()
                {
                    self.arithmetic(&e.value);
                }
                self.compound_list(&f.body.list);
            }
            ast::CompoundCommand::BraceGroup(g) => self.compound_list(&g.list),
            ast::CompoundCommand::Subshell(s) => self.compound_list(&s.list),
            ast::CompoundCommand::ForClause(f) => {
                for w in f.values.iter().flatten() {
                    self.word(&w.value);
                }
                self.compound_list(&f.body.list);
            }
            ast::CompoundCommand::CaseClause(c) => {
                self.word(&c.value.value);
                for item in &c.cases {
                    for p in &item.patterns {
                        self.word(&p.value);
                    }
                    if let Some(list) = &item.cmd {
                        self.compound_list(list);
                    }
                }
            }
            ast::CompoundCommand::IfClause(i) => {
                self.compound_list(&i.condition);
                self.compound_list(&i.then);
                for e in i.elses.iter().flatten() {
                    if let Some(c) = &e.condition {
                        self.compound_list(c);
                    }
                    self.compound_list(&e.body);
                }
            }
            ast::CompoundCommand::WhileClause(w) | ast::CompoundCommand::UntilClause(w) => {
                self.compound_list(&w.0);
                self.compound_list(&w.1.list);
            }
            ast::CompoundCommand::Coprocess(c) => {
                self.analysis
                    .findings
                    .push(Finding::Ask("starts a coprocess".into()));
                self.command(&c.body, ctx);
            }
        }
        self.depth -= 1;
    }

    pub(super) fn arithmetic(&mut self, text: &str) {
        if text.contains("$(") || text.contains('`') {
            self.hidden_substitution(text);
        }
    }
}

/// At most 120 characters, for messages.
pub(crate) fn shorten(text: &str) -> String {
    if text.chars().count() <= 120 {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(117).collect();
        s.push_str("...");
        s
    }
}
