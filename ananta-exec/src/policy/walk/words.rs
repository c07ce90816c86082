//! Words: quote removal, expansions kept as their source, substitutions parsed as scripts,
//! and redirections.

use brush_parser::ast;
use brush_parser::word::{self, TildeExpr, WordPiece, WordPieceWithSource};

use super::*;

impl Walker {
    pub(super) fn hidden_substitution(&mut self, text: &str) {
        self.analysis.findings.push(Finding::Deny {
            rule: "hidden-substitution".into(),
            reason: format!(
                "command substitution inside an expansion cannot be analysed: {}",
                shorten(text)
            ),
        });
    }

    /// Analyses one raw word: resolves quotes, walks substitutions inside it.
    pub(super) fn word(&mut self, raw: &str) -> WordInfo {
        let mut info = WordInfo::literal("");
        match word::parse(raw, &options()) {
            Ok(pieces) => self.pieces(&pieces, raw, false, &mut info),
            Err(_) => {
                if raw.contains("$(") || raw.contains('`') {
                    self.fail(format!("cannot parse word {}", shorten(raw)));
                }
                info.text = raw.to_owned();
                info.literal = false;
            }
        }
        info
    }

    pub(super) fn pieces(
        &mut self,
        pieces: &[WordPieceWithSource],
        raw: &str,
        quoted: bool,
        out: &mut WordInfo,
    ) {
        for p in pieces {
            let source = raw.get(p.start_index..p.end_index).unwrap_or("");
            match &p.piece {
                WordPiece::Text(s) => {
                    if !quoted {
                        if s.contains(['*', '?', '[']) {
                            out.glob = true;
                        }
                        if s.contains('{')
                            && s.contains('}')
                            && (s.contains(',') || s.contains(".."))
                        {
                            out.literal = false;
                        }
                    }
                    out.text.push_str(s);
                }
                WordPiece::SingleQuotedText(s) => out.text.push_str(s),
                WordPiece::AnsiCQuotedText(s) => {
                    if s.contains('\\') {
                        out.literal = false;
                    }
                    out.text.push_str(s);
                }
                WordPiece::DoubleQuotedSequence(inner)
                | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    self.pieces(inner, raw, true, out)
                }
                WordPiece::TildeExpansion(t) => match t {
                    TildeExpr::Home => out.text.push('~'),
                    TildeExpr::UserHome(u) => {
                        out.text.push('~');
                        out.text.push_str(u);
                    }
                    _ => {
                        out.text.push_str(source);
                        out.literal = false;
                    }
                },
                WordPiece::ParameterExpansion(_) => {
                    out.literal = false;
                    if source == "$HOME" || source == "${HOME}" {
                        out.text.push('~');
                    } else {
                        out.text.push_str(source);
                    }
                    if source.contains("$(") || source.contains('`') || source.contains("<(") {
                        self.hidden_substitution(source);
                    }
                }
                WordPiece::CommandSubstitution(s) | WordPiece::BackquotedCommandSubstitution(s) => {
                    out.literal = false;
                    out.text.push_str(source);
                    self.script(s);
                }
                WordPiece::EscapeSequence(s) => out.text.push_str(s.get(1..).unwrap_or("")),
                WordPiece::ArithmeticExpression(e) => {
                    out.literal = false;
                    out.text.push_str(source);
                    self.arithmetic(&e.value);
                }
            }
        }
    }

    pub(super) fn redirect(&mut self, r: &ast::IoRedirect) -> Option<Redir> {
        match r {
            ast::IoRedirect::File(_, kind, target) => match target {
                ast::IoFileRedirectTarget::Filename(w) => {
                    let target = self.word(&w.value);
                    let kind = match kind {
                        ast::IoFileRedirectKind::Read => RedirKind::Read,
                        _ => RedirKind::Write,
                    };
                    Some(Redir { kind, target })
                }
                ast::IoFileRedirectTarget::Fd(_) => None,
                ast::IoFileRedirectTarget::ProcessSubstitution(_, sub) => {
                    self.compound_list(&sub.list);
                    None
                }
                ast::IoFileRedirectTarget::Duplicate(w) => {
                    let target = self.word(&w.value);
                    let t = target.text.trim_end_matches('-');
                    if target.literal && (t.is_empty() || t.chars().all(|c| c.is_ascii_digit())) {
                        None
                    } else {
                        Some(Redir {
                            kind: RedirKind::Write,
                            target,
                        })
                    }
                }
            },
            ast::IoRedirect::HereDocument(_, doc) => {
                if doc.requires_expansion {
                    let body = &doc.doc.value;
                    match word::parse_heredoc(body, &options()) {
                        Ok(pieces) => {
                            let mut info = WordInfo::literal("");
                            self.pieces(&pieces, body, true, &mut info);
                        }
                        Err(_) => {
                            if body.contains("$(") || body.contains('`') {
                                self.fail("cannot parse a here-document".into());
                            }
                        }
                    }
                }
                None
            }
            ast::IoRedirect::HereString(_, w) => {
                self.word(&w.value);
                None
            }
            ast::IoRedirect::OutputAndError(w, _) => Some(Redir {
                kind: RedirKind::Write,
                target: self.word(&w.value),
            }),
        }
    }
}
