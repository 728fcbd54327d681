//! Expressions, the recursion path: `and` / `or` / `not`, comparisons and
//! matches with their lists, arithmetic, operands, function calls.

use super::*;

impl<'a> Parser<'a> {

    /// `expr := and ('or' and)*`, `and := not ('and' not)*`,
    /// `not := 'not' not | predicate`, in one loop: `and`/`or` chains are
    /// flat lists and `not` runs are counted, so only parentheses, calls and
    /// value lists recurse, each through few stack frames.
    pub(super) fn parse_expr(&mut self) -> PResult<Expr> {
        let start = self.span();
        let mut disjuncts: Vec<Expr> = Vec::new();
        let mut conjuncts: Vec<Expr> = Vec::new();
        let mut conj_start = start;
        let mut nots: Vec<Span> = Vec::new();
        loop {
            while self.at_kw("not") {
                self.enter()?;
                nots.push(self.advance());
            }
            let mut term = self.parse_predicate()?;
            while let Some(not_span) = nots.pop() {
                term = Expr::Not(Box::new(term), self.span_from(not_span));
                self.leave();
            }
            conjuncts.push(term);
            if self.eat_kw("and") {
                continue;
            }
            let conj = self.join(std::mem::take(&mut conjuncts), conj_start, Expr::And);
            disjuncts.push(conj);
            if !self.eat_kw("or") {
                break;
            }
            conj_start = self.span();
        }
        Ok(self.join(disjuncts, start, Expr::Or))
    }

    /// The single item, or `make(items)` spanning from `start`.
    pub(super) fn join(&self, mut items: Vec<Expr>, start: Span, make: fn(Vec<Expr>, Span) -> Expr) -> Expr {
        if items.len() == 1 {
            if let Some(only) = items.pop() {
                return only;
            }
        }
        make(items, self.span_from(start))
    }

    /// An arithmetic expression, optionally followed by a comparison or
    /// match operator.
    pub(super) fn parse_predicate(&mut self) -> PResult<Expr> {
        let start = self.span();
        let left = self.parse_arith()?;
        match *self.tok() {
            Tok::Cmp(op) => {
                self.advance();
                let right = self.parse_arith()?;
                if let Tok::Cmp(_) = self.tok() {
                    return Err(self.error(
                        RuleErrorKind::Syntax,
                        "comparisons cannot be chained; join them with 'and'",
                        self.span(),
                    ));
                }
                Ok(Expr::Compare {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                    span: self.span_from(start),
                })
            }
            Tok::Assign => Err(self.assign_error()),
            Tok::Bang if self.peek_nth(1).tok == Tok::Colon => Err(self.error(
                RuleErrorKind::Syntax,
                "'!:' is not an EQL operator; write 'not field : \"value\"' (or '!=' for an exact comparison)",
                self.span(),
            )),
            Tok::Colon | Tok::Ident { .. } => match self.match_operator()? {
                Some((op, negated, op_span)) => {
                    let values = self.parse_match_values(op, op_span)?;
                    let subject = Box::new(left);
                    Ok(Expr::Match { op, negated, subject, values, span: self.span_from(start) })
                }
                // Not an operator: the operand stands alone and the caller
                // decides whether what follows is valid.
                None => Ok(left),
            },
            _ => Ok(left),
        }
    }

    /// `term (('+' | '-') term)*`, left-associative. A negative number
    /// literal directly after an operand (`a -1`) is a subtraction.
    pub(super) fn parse_arith(&mut self) -> PResult<Expr> {
        let start = self.span();
        let mut left = self.parse_term()?;
        loop {
            let op = match *self.tok() {
                Tok::Arith(op @ (ArithOp::Add | ArithOp::Sub)) => {
                    self.advance();
                    op
                }
                Tok::Int(_) | Tok::Float(_) if self.text_of(self.span()).starts_with('-') => {
                    // `a -1`: the lexer read `-1` as one number.
                    ArithOp::Sub
                }
                _ => return Ok(left),
            };
            let right = if op == ArithOp::Sub && matches!(self.tok(), Tok::Int(_) | Tok::Float(_))
                && self.text_of(self.span()).starts_with('-')
                && self.tokens[self.pos - 1].tok != Tok::Arith(ArithOp::Sub)
            {
                let sp = self.advance();
                let lit = match self.tokens[self.pos - 1].tok {
                    Tok::Int(v) => match v.checked_neg() {
                        Some(n) => Literal::Int(n),
                        None => Literal::Float(-(v as f64)),
                    },
                    Tok::Float(v) => Literal::Float(-v),
                    _ => unreachable_literal(),
                };
                let mut e = Expr::Literal(lit, sp);
                // Then any `*`, `/`, `%` that follow bind tighter.
                e = self.parse_term_rest(e, sp)?;
                e
            } else {
                self.parse_term()?
            };
            left = Expr::Arith { op, left: Box::new(left), right: Box::new(right), span: self.span_from(start) };
        }
    }

    /// `unary (('*' | '/' | '%') unary)*`
    pub(super) fn parse_term(&mut self) -> PResult<Expr> {
        let start = self.span();
        let first = self.parse_unary()?;
        self.parse_term_rest(first, start)
    }

    pub(super) fn parse_term_rest(&mut self, mut left: Expr, start: Span) -> PResult<Expr> {
        while let Tok::Arith(op @ (ArithOp::Mul | ArithOp::Div | ArithOp::Mod)) = *self.tok() {
            self.advance();
            let right = self.parse_unary()?;
            left = Expr::Arith { op, left: Box::new(left), right: Box::new(right), span: self.span_from(start) };
        }
        Ok(left)
    }

    /// `'-' unary | '+' unary | operand`: one nesting level per sign.
    pub(super) fn parse_unary(&mut self) -> PResult<Expr> {
        match *self.tok() {
            Tok::Arith(ArithOp::Sub) => {
                self.enter()?;
                let sp = self.advance();
                let inner = self.parse_unary()?;
                self.leave();
                Ok(match inner {
                    Expr::Literal(Literal::Int(v), _) if v.checked_neg().is_some() => {
                        Expr::Literal(Literal::Int(-v), self.span_from(sp))
                    }
                    Expr::Literal(Literal::Float(v), _) => Expr::Literal(Literal::Float(-v), self.span_from(sp)),
                    other => Expr::Neg(Box::new(other), self.span_from(sp)),
                })
            }
            Tok::Arith(ArithOp::Add) => {
                self.enter()?;
                self.advance();
                let inner = self.parse_unary()?;
                self.leave();
                Ok(inner)
            }
            _ => self.parse_operand(),
        }
    }

    /// Consume `[not] op` if a match operator starts here, returning it, its
    /// negation and the operator token's span; `None` (nothing consumed) if
    /// the current token is no operator.
    #[inline(never)]
    pub(super) fn match_operator(&mut self) -> PResult<Option<(MatchOp, bool, Span)>> {
        let negated = self.at_kw("not");
        if negated {
            self.advance();
        }
        let op_span = self.span();
        let op = match (self.tok(), self.ident_name(self.peek())) {
            (Tok::Colon, _) if !negated => MatchOp::Colon,
            (&Tok::Ident { tilde }, Some(name)) => {
                if name.eq_ignore_ascii_case("in") {
                    if tilde {
                        MatchOp::InInsensitive
                    } else {
                        MatchOp::In
                    }
                } else if name.eq_ignore_ascii_case("like") {
                    if tilde {
                        MatchOp::LikeInsensitive
                    } else {
                        MatchOp::Like
                    }
                } else if name.eq_ignore_ascii_case("regex") {
                    if tilde {
                        MatchOp::RegexInsensitive
                    } else {
                        MatchOp::Regex
                    }
                } else if negated {
                    return Err(self.expected("'in', 'in~', 'like', 'like~', 'regex' or 'regex~' after 'not'"));
                } else {
                    return Ok(None);
                }
            }
            _ if negated => {
                return Err(self.expected("'in', 'in~', 'like', 'like~', 'regex' or 'regex~' after 'not'"))
            }
            _ => return Ok(None),
        };
        self.advance();
        Ok(Some((op, negated, op_span)))
    }

    /// The values after match operator `op` (token at `op_span`): a
    /// parenthesised, non-empty list (one nesting level) or, except for
    /// `in`/`in~`, a single operand.
    pub(super) fn parse_match_values(&mut self, op: MatchOp, op_span: Span) -> PResult<Vec<Expr>> {
        if *self.tok() != Tok::LParen {
            if matches!(op, MatchOp::In | MatchOp::InInsensitive) {
                return Err(self.list_required(op_span));
            }
            return self.parse_operand().map(|value| vec![value]);
        }
        self.enter()?;
        let open = self.advance();
        if *self.tok() == Tok::RParen {
            return Err(self.empty_list(op_span));
        }
        let items = self.parse_items(ListOwner::Operator(op_span), open)?;
        self.leave();
        Ok(items)
    }

    #[cold]
    #[inline(never)]
    pub(super) fn list_required(&self, op_span: Span) -> RuleError {
        let op = self.text_of(op_span);
        self.expected(&format!("'(' after '{op}' (write {op} (\"a\", \"b\"))"))
    }

    #[cold]
    #[inline(never)]
    pub(super) fn empty_list(&self, op_span: Span) -> RuleError {
        self.expected(&format!("a value in the '{}' list", self.text_of(op_span)))
    }

    /// `expr (',' expr)* ')'` after the `(` at `open`.
    pub(super) fn parse_items(&mut self, owner: ListOwner, open: Span) -> PResult<Vec<Expr>> {
        let mut items = vec![self.parse_expr()?];
        loop {
            match self.tok() {
                Tok::Comma => {
                    self.advance();
                    items.push(self.parse_expr()?);
                }
                Tok::RParen => {
                    self.advance();
                    return Ok(items);
                }
                _ => return Err(self.unclosed_list(owner, open)),
            }
        }
    }

    /// `( expr )`, a call, a field or a literal.
    pub(super) fn parse_operand(&mut self) -> PResult<Expr> {
        let span = self.span();
        let lit = match self.tok() {
            Tok::LParen => return self.parse_paren(),
            Tok::Ident { tilde } => {
                let tilde = *tilde;
                let name = self.text_of(span);
                let name = if tilde { &name[..name.len() - 1] } else { name };
                if !is_reserved(name) && self.peek_nth(1).tok == Tok::LParen {
                    return self.parse_call(tilde);
                }
                if tilde {
                    return Err(self.tilde_error());
                }
                if self.is_kw_tok(self.peek_nth(1), "of")
                    && ["descendant", "child", "event"].iter().any(|k| name.eq_ignore_ascii_case(k))
                {
                    return Err(self.error(
                        RuleErrorKind::Unsupported,
                        format!(
                            "lineage ('{} of [...]') is not supported (Elasticsearch's EQL refuses it too)",
                            name.to_ascii_lowercase()
                        ),
                        span,
                    ));
                }
                if name.eq_ignore_ascii_case("true") {
                    Literal::Bool(true)
                } else if name.eq_ignore_ascii_case("false") {
                    Literal::Bool(false)
                } else if name.eq_ignore_ascii_case("null") {
                    Literal::Null
                } else if is_reserved(name) {
                    return Err(self.expected("a field, value or function call"));
                } else {
                    return self.parse_field("").map(Expr::Field);
                }
            }
            Tok::QuotedIdent(_) | Tok::Question => return self.parse_field("").map(Expr::Field),
            Tok::Str(s) => Literal::Str(s.clone()),
            Tok::Int(v) => Literal::Int(*v),
            Tok::Float(v) => Literal::Float(*v),
            Tok::Assign => return Err(self.assign_error()),
            _ => return Err(self.expected("a field, value or function call")),
        };
        self.advance();
        Ok(Expr::Literal(lit, span))
    }

    #[cold]
    #[inline(never)]
    pub(super) fn tilde_error(&self) -> RuleError {
        let text = self.text_of(self.span());
        let name = truncate(text.trim_end_matches('~'), 30);
        self.error(
            RuleErrorKind::Syntax,
            format!("'~' after '{name}' is only allowed on a function call ('{name}~(…)')"),
            self.span(),
        )
    }

    /// `( expr )` at the current `(`: one nesting level.
    pub(super) fn parse_paren(&mut self) -> PResult<Expr> {
        self.enter()?;
        let open = self.advance();
        let inner = self.parse_expr()?;
        if *self.tok() != Tok::RParen {
            return Err(self.unclosed_paren(open));
        }
        self.advance();
        self.leave();
        Ok(inner)
    }

    /// `name(args)` or `name~(args)` at the name: one nesting level.
    pub(super) fn parse_call(&mut self, case_insensitive: bool) -> PResult<Expr> {
        self.enter()?;
        let name_span = self.advance();
        let open = self.advance(); // (
        let args = if *self.tok() == Tok::RParen {
            self.advance();
            Vec::new()
        } else {
            self.parse_items(ListOwner::Call(name_span), open)?
        };
        self.leave();
        let text = self.text_of(name_span);
        let name = if case_insensitive { &text[..text.len() - 1] } else { text };
        Ok(Expr::Call {
            name: name.to_string(),
            case_insensitive,
            args,
            span: self.span_from(name_span),
        })
    }
}

#[cold]
pub(super) fn unreachable_literal() -> Literal {
    Literal::Null
}
