//! Simple commands: assignments, redirections and words, wrappers (`env`, `sudo`, `xargs`…)
//! removed, and `bash -c` / `eval` / `find -exec` scripts walked in turn.

use brush_parser::ast;

use super::*;

impl Walker {
    pub(super) fn simple(&mut self, simple: &ast::SimpleCommand, ctx: Ctx) -> Option<String> {
        let mut words = Vec::new();
        let mut cmd = SimpleCmd {
            piped_in: ctx.piped_in,
            ..SimpleCmd::default()
        };
        for item in simple.prefix.iter().flat_map(|p| p.0.iter()) {
            self.item(item, true, &mut words, &mut cmd);
        }
        if let Some(w) = &simple.word_or_name {
            let info = self.word(&w.value);
            words.push(info);
        }
        for item in simple.suffix.iter().flat_map(|s| s.0.iter()) {
            self.item(item, false, &mut words, &mut cmd);
        }
        cmd.display = shorten(
            &words
                .iter()
                .map(|w| w.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        );
        self.run(words, cmd, ctx)
    }

    pub(super) fn item(
        &mut self,
        item: &ast::CommandPrefixOrSuffixItem,
        in_prefix: bool,
        words: &mut Vec<WordInfo>,
        cmd: &mut SimpleCmd,
    ) {
        match item {
            ast::CommandPrefixOrSuffixItem::IoRedirect(r) => {
                if let Some(redir) = self.redirect(r) {
                    cmd.redirects.push(redir);
                }
            }
            ast::CommandPrefixOrSuffixItem::Word(w) => {
                let info = self.word(&w.value);
                words.push(info);
            }
            ast::CommandPrefixOrSuffixItem::AssignmentWord(a, w) => {
                let info = self.word(&w.value);
                if in_prefix {
                    cmd.assignments.push(assignment_name(&a.name));
                    if let ast::AssignmentValue::Array(values) = &a.value {
                        for (k, v) in values {
                            if let Some(k) = k {
                                self.word(&k.value);
                            }
                            self.word(&v.value);
                        }
                    }
                } else {
                    words.push(info);
                }
            }
            ast::CommandPrefixOrSuffixItem::ProcessSubstitution(_, sub) => {
                self.compound_list(&sub.list);
                if !in_prefix {
                    words.push(WordInfo::literal("/dev/fd/63"));
                }
            }
        }
    }

    /// Removes wrappers, follows `-c` strings, `eval` and `find -exec`, then records the
    /// command. Returns the final command name.
    pub(super) fn run(
        &mut self,
        mut words: Vec<WordInfo>,
        mut cmd: SimpleCmd,
        ctx: Ctx,
    ) -> Option<String> {
        while let Some(first) = words.first() {
            if !first.literal || first.glob {
                break;
            }
            let name = basename(&first.text).to_owned();
            let skip = match name.as_str() {
                "env" => self.env_prefix(&words, &mut cmd),
                "timeout" => wrapper_skip(&words, &["-s", "--signal", "-k", "--kill-after"], 1),
                "nohup" | "busybox" | "builtin" => wrapper_skip(&words, &[], 0),
                "setsid" | "time" => wrapper_skip(&words, &["-f", "-o", "--output", "--format"], 0),
                "nice" => wrapper_skip(&words, &["-n", "--adjustment"], 0),
                "stdbuf" => wrapper_skip(&words, &["-i", "-o", "-e"], 0),
                "ionice" => wrapper_skip(&words, &["-c", "-n", "-p", "-P", "-u", "--class"], 0),
                "exec" => wrapper_skip(&words, &["-a"], 0),
                "command" => {
                    if words
                        .iter()
                        .skip(1)
                        .take_while(|w| w.text.starts_with('-'))
                        .any(|w| w.text.contains(['v', 'V']))
                    {
                        None
                    } else {
                        wrapper_skip(&words, &[], 0)
                    }
                }
                "xargs" => {
                    let skip = wrapper_skip(
                        &words,
                        &[
                            "-I",
                            "-i",
                            "-n",
                            "-P",
                            "-L",
                            "-l",
                            "-d",
                            "-E",
                            "-e",
                            "-s",
                            "-a",
                            "--max-args",
                            "--max-procs",
                            "--delimiter",
                            "--arg-file",
                            "--replace",
                            "--max-lines",
                            "--eof",
                            "--max-chars",
                        ],
                        0,
                    );
                    if skip.is_some() {
                        cmd.xargs = true;
                        cmd.piped_in = true;
                    }
                    skip
                }
                _ => None,
            };
            match skip {
                Some(n) if n < words.len() => {
                    words.drain(..n);
                }
                _ => break,
            }
        }

        let name = match words.first() {
            Some(w) if w.literal && !w.glob => Some(basename(&w.text).to_owned()),
            _ => None,
        };
        if let Some(name) = &name {
            if self.current_functions.contains(name) {
                if ctx.in_pipeline || ctx.background {
                    self.analysis.findings.push(Finding::Deny {
                        rule: "fork-bomb".into(),
                        reason: format!(
                            "function `{name}` calls itself in a pipeline or in the background"
                        ),
                    });
                } else {
                    self.analysis
                        .findings
                        .push(Finding::Ask(format!("function `{name}` calls itself")));
                }
            }
            if SHELLS.contains(&name.as_str())
                && let Some(script) = shell_c_script(&words)
            {
                let script = script.clone();
                if !script.literal {
                    self.analysis.findings.push(Finding::Ask(format!(
                        "`{}` runs a string computed at run time",
                        cmd.display
                    )));
                }
                self.script(&script.text);
                self.analysis.commands.push(SimpleCmd {
                    words: Vec::new(),
                    ..cmd
                });
                return Some(name.clone());
            }
            if name == "eval" {
                let args = &words[1..];
                if args.iter().any(|w| !w.literal) {
                    self.analysis.findings.push(Finding::Ask(format!(
                        "`{}` evaluates a string computed at run time",
                        cmd.display
                    )));
                }
                let text = args
                    .iter()
                    .map(|w| w.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                if !text.trim().is_empty() {
                    self.script(&text);
                }
                self.analysis.commands.push(SimpleCmd {
                    words: Vec::new(),
                    ..cmd
                });
                return Some(name.clone());
            }
            if name == "find" {
                self.find_exec(&words);
            }
        }
        cmd.words = words;
        self.analysis.commands.push(cmd);
        name
    }

    /// `env [-i] [-u NAME] [NAME=VALUE]… CMD`: records assignments, follows `-S STRING`.
    pub(super) fn env_prefix(&mut self, words: &[WordInfo], cmd: &mut SimpleCmd) -> Option<usize> {
        let mut i = 1;
        while let Some(w) = words.get(i) {
            let t = w.text.as_str();
            if t == "--" {
                i += 1;
                break;
            } else if t == "-u" || t == "--unset" || t == "-C" || t == "--chdir" {
                i += 2;
            } else if t == "-S" || t == "--split-string" {
                let rest: Vec<&str> = words[i + 1..].iter().map(|w| w.text.as_str()).collect();
                self.analysis.findings.push(Finding::Ask(
                    "`env -S` splits a string into a command".into(),
                ));
                self.script(&rest.join(" "));
                return None;
            } else if t.starts_with('-') && t.len() > 1 {
                i += 1;
            } else if is_assignment(t) {
                cmd.assignments
                    .push(t.split('=').next().unwrap_or_default().to_owned());
                i += 1;
            } else {
                break;
            }
        }
        Some(i)
    }

    pub(super) fn find_exec(&mut self, words: &[WordInfo]) {
        let mut i = 1;
        while i < words.len() {
            let t = words[i].text.as_str();
            if matches!(t, "-exec" | "-execdir" | "-ok" | "-okdir") {
                let start = i + 1;
                let mut end = start;
                while end < words.len() && words[end].text != ";" && words[end].text != "+" {
                    end += 1;
                }
                if start < end {
                    let sub: Vec<WordInfo> = words[start..end].to_vec();
                    let display = shorten(
                        &sub.iter()
                            .map(|w| w.text.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                    let cmd = SimpleCmd {
                        display,
                        ..SimpleCmd::default()
                    };
                    self.run(sub, cmd, Ctx::default());
                }
                i = end;
            }
            i += 1;
        }
    }
}

fn assignment_name(name: &ast::AssignmentName) -> String {
    match name {
        ast::AssignmentName::VariableName(n) => n.clone(),
        ast::AssignmentName::ArrayElementName(n, _) => n.clone(),
    }
}

/// Skips a wrapper's own options (`value_flags` take the next word) and `positional` fixed
/// arguments. Returns how many words belong to the wrapper.
fn wrapper_skip(words: &[WordInfo], value_flags: &[&str], positional: usize) -> Option<usize> {
    let mut i = 1;
    while let Some(w) = words.get(i) {
        let t = w.text.as_str();
        if t == "--" {
            i += 1;
            break;
        }
        if !(t.starts_with('-') && t.len() > 1) {
            break;
        }
        i += if value_flags.contains(&t) { 2 } else { 1 };
    }
    Some(i + positional)
}

/// The script string of `sh -c STRING` (also `-lc`, `-ec`, `-o opt -c`).
fn shell_c_script(words: &[WordInfo]) -> Option<&WordInfo> {
    let mut i = 1;
    let mut dash_c = false;
    while let Some(w) = words.get(i) {
        let t = w.text.as_str();
        if t == "-o" || t == "+o" || t == "-O" || t == "+O" {
            i += 2;
            continue;
        }
        if t == "--" {
            i += 1;
            break;
        }
        if (t.starts_with('-') || t.starts_with('+')) && t.len() > 1 {
            if !t.starts_with("--") && t[1..].contains('c') {
                dash_c = true;
            }
            i += 1;
            continue;
        }
        break;
    }
    if dash_c { words.get(i) } else { None }
}
