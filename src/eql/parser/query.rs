//! The query level: `sequence` and `sample` with their parameters and
//! stages, event queries (`category where …`), `by` field lists.

use super::*;

impl<'a> Parser<'a> {

    pub(super) fn parse_query(&mut self) -> PResult<Query> {
        if self.at_kw("sequence") {
            return self.parse_sequence().map(Query::Sequence);
        }
        if self.at_kw("sample") {
            return self.parse_sample().map(Query::Sample);
        }
        if self.at_kw("join") {
            return Err(self.error(
                RuleErrorKind::Unsupported,
                "'join' queries are not supported (Elasticsearch refuses them too)",
                self.span(),
            ));
        }
        self.parse_event_query().map(Query::Event)
    }

    /// After the query: only the end of the text may follow.
    pub(super) fn expect_end(&mut self) -> PResult<()> {
        match self.tok() {
            Tok::Eof => Ok(()),
            Tok::Pipe => Err(self.pipe_error()),
            _ if self.at_kw("until") => Err(self.error(
                RuleErrorKind::Syntax,
                "'until' belongs to a sequence, after its last stage",
                self.span(),
            )),
            _ => Err(self.error(
                RuleErrorKind::Syntax,
                format!("unexpected {} after the end of the query", self.describe(self.peek())),
                self.span(),
            )),
        }
    }

    pub(super) fn parse_sequence(&mut self) -> PResult<Sequence> {
        let kw_span = self.advance();
        let mut by: Option<Vec<Field>> = None;
        let mut maxspan_ms: Option<u64> = None;
        loop {
            if self.at_kw("by") {
                if by.is_some() {
                    return Err(self.error(
                        RuleErrorKind::Syntax,
                        "'by' given twice for the sequence",
                        self.span(),
                    ));
                }
                self.advance();
                by = Some(self.parse_field_list("'by'")?);
            } else if self.at_kw("with") {
                if maxspan_ms.is_some() {
                    return Err(self.error(
                        RuleErrorKind::Syntax,
                        "'with maxspan' given twice",
                        self.span(),
                    ));
                }
                self.advance();
                maxspan_ms = Some(self.parse_maxspan()?);
            } else {
                break;
            }
        }
        let stages = self.parse_stages("sequence", true)?;
        let until = if self.at_kw("until") {
            self.advance();
            if *self.tok() != Tok::LBracket {
                return Err(self.expected("'[' to start the 'until' stage"));
            }
            let st = self.parse_stage(false, false)?;
            Some(st)
        } else {
            None
        };
        Ok(Sequence { by: by.unwrap_or_default(), maxspan_ms, stages, until, span: kw_span })
    }

    /// `sample [by fields] stage stage+`
    pub(super) fn parse_sample(&mut self) -> PResult<Sample> {
        let kw_span = self.advance();
        let by = if self.eat_kw("by") { self.parse_field_list("'by'")? } else { Vec::new() };
        if self.at_kw("with") {
            return Err(self.error(
                RuleErrorKind::Syntax,
                "'with' is not allowed on a sample (samples have no maxspan)",
                self.span(),
            ));
        }
        let stages = self.parse_stages("sample", false)?;
        if self.at_kw("until") {
            return Err(self.error(
                RuleErrorKind::Syntax,
                "'until' is only allowed in a sequence",
                self.span(),
            ));
        }
        Ok(Sample { by, stages, span: kw_span })
    }

    /// The stages of a sequence (`seq`: `![…]` and `with runs=` allowed) or
    /// a sample.
    pub(super) fn parse_stages(&mut self, what: &str, seq: bool) -> PResult<Vec<Stage>> {
        let mut stages: Vec<Stage> = Vec::new();
        let mut count: usize = 0;
        loop {
            let missing = match self.tok() {
                Tok::LBracket => false,
                Tok::Bang if self.peek_nth(1).tok == Tok::LBracket => {
                    if !seq {
                        return Err(self.error(
                            RuleErrorKind::Syntax,
                            format!("missing-event stages ('![…]') are only allowed in a sequence, not in a {what}"),
                            self.span(),
                        ));
                    }
                    true
                }
                _ => break,
            };
            let st = self.parse_stage(missing, seq)?;
            count += st.runs as usize;
            if count > MAX_STAGES {
                return Err(self.error(
                    RuleErrorKind::Limit,
                    format!("a {what} may have at most {MAX_STAGES} stages (counting 'runs' repetitions)"),
                    st.span,
                ));
            }
            stages.push(st);
        }
        if count < 2 {
            let what = if stages.is_empty() {
                format!("'[' to start the first {what} stage")
            } else {
                format!("'[' to start the second {what} stage (a {what} needs at least two)")
            };
            return Err(self.expected(&what));
        }
        if seq && stages.iter().all(|s| s.missing) {
            return Err(self.error(
                RuleErrorKind::Syntax,
                "a sequence needs at least one stage that is not a missing-event stage",
                stages[0].span,
            ));
        }
        Ok(stages)
    }

    /// `maxspan = N unit` after `with`, in milliseconds.
    pub(super) fn parse_maxspan(&mut self) -> PResult<u64> {
        if !self.eat_kw("maxspan") {
            return Err(self.expected("'maxspan' after 'with'"));
        }
        if *self.tok() == Tok::Cmp(CmpOp::Eq) {
            return Err(self.error(
                RuleErrorKind::Syntax,
                "expected '=' after 'maxspan' but found '==' (write maxspan=5s)",
                self.span(),
            ));
        }
        if *self.tok() != Tok::Assign {
            return Err(self.expected("'=' after 'maxspan'"));
        }
        self.advance();
        let num_span = self.span();
        let value = match *self.tok() {
            Tok::Int(v) if v > 0 => v as u64,
            Tok::Int(_) => {
                return Err(self.error(
                    RuleErrorKind::Syntax,
                    "a positive maxspan value is required",
                    num_span,
                ))
            }
            Tok::Float(_) => {
                return Err(self.error(
                    RuleErrorKind::Syntax,
                    "maxspan must be a whole number (use a smaller unit, e.g. 1500ms)",
                    num_span,
                ))
            }
            _ => return Err(self.expected("a duration such as 5s after 'maxspan='")),
        };
        self.advance();
        let unit = match self.tok() {
            Tok::Ident { tilde: false } => self.text_of(self.span()),
            _ => "",
        };
        let Some(factor) = crate::format::time::unit_ms(unit) else {
            return Err(self.expected("a time unit (ms, s, m, h or d) after the maxspan value"));
        };
        self.advance();
        value.checked_mul(factor).ok_or_else(|| {
            self.error(RuleErrorKind::Syntax, "maxspan is too large", self.span_from(num_span))
        })
    }

    /// `[ event_query ] [by fields] [with runs=N]` (with `![` for a
    /// missing-event stage); `runs` only when `allow_runs`.
    pub(super) fn parse_stage(&mut self, missing: bool, allow_runs: bool) -> PResult<Stage> {
        let first = if missing { self.advance() } else { self.span() };
        let open = self.advance();
        let query = self.parse_event_query()?;
        match self.tok() {
            Tok::RBracket => {
                self.advance();
            }
            Tok::Pipe => return Err(self.pipe_error()),
            _ => {
                return Err(self.expected(&format!(
                    "']' to close the stage opened at line {}, column {}",
                    open.line, open.column
                )))
            }
        }
        let by = if self.eat_kw("by") { self.parse_field_list("'by'")? } else { Vec::new() };
        let mut runs = 1u32;
        if self.at_kw("with") {
            if !self.is_kw_tok(self.peek_nth(1), "runs") {
                return Err(self.error(
                    RuleErrorKind::Syntax,
                    "unexpected 'with' after a stage (only 'with runs=N' may follow a stage; 'with maxspan=…' belongs right after 'sequence')",
                    self.span(),
                ));
            }
            if !allow_runs {
                return Err(self.error(
                    RuleErrorKind::Syntax,
                    "'with runs=…' is only allowed on sequence stages",
                    self.span(),
                ));
            }
            self.advance();
            self.advance();
            if *self.tok() != Tok::Assign {
                return Err(self.expected("'=' after 'runs'"));
            }
            self.advance();
            let num = self.span();
            runs = match *self.tok() {
                Tok::Int(v) if (1..=MAX_RUNS).contains(&v) => v as u32,
                Tok::Int(_) => {
                    return Err(self.error(
                        RuleErrorKind::Syntax,
                        format!("runs must be between 1 and {MAX_RUNS}"),
                        num,
                    ))
                }
                _ => return Err(self.expected("a whole number after 'runs='")),
            };
            self.advance();
        }
        Ok(Stage { query, by, span: first, runs, missing })
    }

    /// `category where expr`
    pub(super) fn parse_event_query(&mut self) -> PResult<EventQuery> {
        const WHAT: &str = "an event category (e.g. process, network or any)";
        let start = self.span();
        let category = match self.tok() {
            Tok::Str(s) => Some(s.clone()),
            Tok::Ident { tilde: false } => {
                let name = self.text_of(start);
                if name.eq_ignore_ascii_case("any") {
                    None
                } else if is_reserved(name) {
                    return Err(self.expected(WHAT));
                } else {
                    Some(name.to_string())
                }
            }
            _ => return Err(self.expected(WHAT)),
        };
        self.advance();
        if !self.eat_kw("where") {
            return Err(self.expected("'where' after the event category"));
        }
        let condition = self.parse_expr()?;
        Ok(EventQuery { category, condition, span: self.span_from(start) })
    }

    /// `field (',' field)*`; `after` names what precedes it, for messages.
    pub(super) fn parse_field_list(&mut self, after: &str) -> PResult<Vec<Field>> {
        let mut fields = vec![self.parse_field(after)?];
        while *self.tok() == Tok::Comma {
            self.advance();
            fields.push(self.parse_field("','")?);
        }
        Ok(fields)
    }

    /// A dotted field name; `after` names what precedes it, for messages.
    pub(super) fn parse_field(&mut self, after: &str) -> PResult<Field> {
        let start = self.span();
        let optional = *self.tok() == Tok::Question;
        if optional {
            self.advance();
        }
        let first = self.span();
        let mut name = match self.tok() {
            Tok::QuotedIdent(s) => s.clone(),
            Tok::Ident { tilde: false } if !is_reserved(self.text_of(first)) => {
                self.text_of(first).to_string()
            }
            _ => return Err(self.expected(&format!("a field name after {after}"))),
        };
        self.advance();
        while *self.tok() == Tok::Dot {
            self.advance();
            name.push('.');
            match self.tok() {
                Tok::QuotedIdent(s) => name.push_str(s),
                // After a dot even keywords are plain name parts.
                Tok::Ident { tilde: false } => name.push_str(self.text_of(self.span())),
                _ => return Err(self.expected("a field name part after '.'")),
            }
            self.advance();
        }
        if *self.tok() == Tok::LBracket
            && self.span().start == self.prev_end
            && matches!(self.peek_nth(1).tok, Tok::Int(_))
        {
            return Err(self.error(
                RuleErrorKind::Unsupported,
                "array indexing in field names ('field[0]') is not supported",
                self.span(),
            ));
        }
        Ok(Field { name, span: self.span_from(start), optional })
    }
}
