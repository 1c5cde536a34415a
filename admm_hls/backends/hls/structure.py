"""Structure check of generated Vitis HLS C++: the canonical forms (UG1399) the project promises.

A few source patterns compile and simulate fine but do not synthesize into the hardware the
planner costed:

* `divider`: a `/` or `%` by anything but a power-of-two constant inside a loop infers a
  multi-cycle divider in the loop's datapath;
* `channel`: a dataflow channel (local array or stream, or a top port) shared by more than one
  reader or writer, or read and written by one process, makes Vitis serialize the processes;
* `static-array`: a static array in the dataflow region is shared state, not a channel;
* `maxi-burst`: an m_axi pointer read other than as `p[i]` (or `p[K + i]`) by the counter of a
  pipelined `for (int i = K0; i < N; ++i)` loop does not infer a burst;
* `pe-loop`: an unrolled "PE" loop around a pipelined loop gives one copy of the pipelined loop per
  PE, and Vitis runs those copies one after another.

`check_structure` reads the sources the way Vitis HLS sees them (`__SYNTHESIS__` defined,
`ADMM_HLS_TRACE` not) and reports every such place. It is a tokenizer and a few pattern checks, not
a C++ parser: it relies on the conventions of the generated code (pragmas as `#pragma HLS ...` or
`ADMM_PRAGMA(HLS ...)` lines in the scope they apply to, processes as plain calls in the dataflow
region) and skips what it cannot read instead of raising.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, NamedTuple

__all__ = ["RULES", "Violation", "StructureError", "check_structure", "assert_structure", "synthesis_view"]

RULES = ("divider", "channel", "static-array", "maxi-burst", "pe-loop")

# What Vitis HLS defines when it reads the sources (ADMM_HLS_TRACE, the csim trace switch, is not).
_PREDEFINED: dict[str, int | None] = {"__SYNTHESIS__": 1}
# The project's pragma macro: _Pragma(#x) under synthesis, nothing for g++.
_PRAGMA_MACRO = "ADMM_PRAGMA"

_KEYWORDS = frozenset("if for while switch catch return sizeof do else case new delete".split()) | {_PRAGMA_MACRO}
_TYPE_WORDS = frozenset("void bool char short int long float double signed unsigned const volatile auto size_t".split())
_IDENT = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Violation:
    """One place where the generated code leaves the canonical HLS form of `rule`."""

    rule: str  # one of RULES
    file: str  # the path as given to check_structure
    line: int  # 1-based
    message: str  # one line: what is wrong, naming the function / variable

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.rule}] {self.message}"


class StructureError(ValueError):
    """Generated HLS code breaks the canonical forms; the message lists every violation, one per line."""

    def __init__(self, violations: Iterable[Violation] | str = ()):
        if isinstance(violations, str):  # a ready message (also how a pickled error is rebuilt)
            self.violations: list[Violation] = []
            super().__init__(violations)
        else:
            self.violations = list(violations)
            super().__init__("\n".join(str(v) for v in self.violations))


def check_structure(files: Mapping[str, str | bytes], top: str) -> list[Violation]:
    """The violations in the firmware/ .cpp and .h files of a project, sorted by (file, line, rule).

    `files` maps relative paths to their text; `top` is the top function, defined in
    firmware/<top>.cpp. Returns [] when the code is in canonical form.
    """
    project = _Project(files)
    found: set[Violation] = set()
    for unit in project.units:
        _collect(found, _check_dividers(project, unit))
        _collect(found, _check_pe_loops(unit))
    for func in project.dataflow_functions():
        _collect(found, _check_dataflow_region(project, func))
    top_func = project.top_function(top)
    if top_func is not None:
        _collect(found, _check_maxi_bursts(project, top_func))
    return sorted(found, key=lambda v: (v.file, v.line, v.rule, v.message))


def synthesis_view(files: Mapping[str, str | bytes]) -> dict[str, str]:
    """The firmware/ .cpp and .h files as Vitis HLS reads them: comments and literals blanked,
    inactive preprocessor branches (csim-only code) and directives other than pragmas empty,
    line numbers kept."""
    return {unit.path: "\n".join(unit.lines) for unit in _Project(files).units}


def assert_structure(files: Mapping[str, str | bytes], top: str) -> None:
    """Raise StructureError listing every violation check_structure finds."""
    violations = check_structure(files, top)
    if violations:
        raise StructureError(violations)


def _collect(found: set[Violation], violations: Iterable[Violation]) -> None:
    try:
        found.update(violations)
    except Exception:  # an unreadable construct: skip the rest of this check, never fail the caller
        pass


# --------------------------------------------------------------------------------------------
# Source text: comments and literals out, preprocessor conditionals evaluated as for synthesis.

_COMMENT_OR_LITERAL = re.compile(r"//|/\*|[\"']")


def _blank(text: str) -> str:
    """Spaces for every character but newlines (so line numbers survive)."""
    return re.sub(r"[^\n]", " ", text)


def _strip_comments_and_literals(text: str) -> str:
    """Comments become spaces; string and char literals keep only their quotes."""
    out, i, n = [], 0, len(text)
    while i < n:
        m = _COMMENT_OR_LITERAL.search(text, i)
        if m is None:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        start, tok = m.start(), m.group()
        if tok == "//":
            end = text.find("\n", start)
            end = n if end < 0 else end
            out.append(_blank(text[start:end]))
        elif tok == "/*":
            end = text.find("*/", start + 2)
            end = n if end < 0 else end + 2
            out.append(_blank(text[start:end]))
        elif tok == "'" and start > 0 and text[start - 1].isdigit():  # a digit separator: 1'000
            end = start + 1
            out.append(tok)
        else:
            end = start + 1
            while end < n and text[end] not in (tok, "\n"):
                end += 2 if text[end] == "\\" else 1
            closed = end < n and text[end] == tok
            out.append(tok + _blank(text[start + 1 : min(end, n)]) + (tok if closed else ""))
            end = end + 1 if closed else min(end, n)
        i = end
    return "".join(out)


_DIRECTIVE = re.compile(r"^\s*#\s*(\w*)(.*)$")
_DEFINE = re.compile(r"^([A-Za-z_]\w*)(\()?(.*)$")


def _preprocess(text: str, defined: dict[str, int | None]) -> tuple[list[str], dict[str, int | None]]:
    """The lines of `text` as synthesis sees them, and the macros the file itself #defines.

    Lines in inactive conditional branches and directive lines become empty, except active
    `#pragma` lines (the HLS pragmas). `defined` maps macro names to their integer value (None:
    defined, but not an integer literal).
    """
    defined = dict(defined)
    own: dict[str, int | None] = {}
    lines = text.split("\n")
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # per open #if: (active outside it, a branch was taken)
    active = True
    i = 0
    while i < len(lines):
        line = lines[i]
        if not _DIRECTIVE.match(line):
            out.append(line if active else "")
            i += 1
            continue
        span = 1
        while line.endswith("\\") and i + span < len(lines):  # a continued directive
            line = line[:-1] + " " + lines[i + span]
            span += 1
        word, rest = _DIRECTIVE.match(line).groups()
        rest = rest.strip()
        kept = ""
        if word in ("if", "ifdef", "ifndef"):
            if word == "if":
                cond = active and _eval_condition(rest, defined)
            else:
                name = rest.split()[0] if rest.split() else ""
                cond = active and ((name in defined) == (word == "ifdef"))
            stack.append((active, cond))
            active = cond
        elif word == "elif" and stack:
            outer, taken = stack[-1]
            active = outer and not taken and _eval_condition(rest, defined)
            stack[-1] = (outer, taken or active)
        elif word == "else" and stack:
            outer, taken = stack[-1]
            active = outer and not taken
            stack[-1] = (outer, True)
        elif word == "endif" and stack:
            active = stack.pop()[0]
        elif active and word == "define":
            m = _DEFINE.match(rest)
            if m:
                value = None if m.group(2) else _int_value(m.group(3))
                defined[m.group(1)] = own[m.group(1)] = value
        elif active and word == "undef":
            name = rest.split()[0] if rest.split() else ""
            defined.pop(name, None)
            own.pop(name, None)
        elif active and word == "pragma":
            kept = line
        out.append(kept)
        out.extend([""] * (span - 1))
        i += span
    return out, own


_COND_TOKEN = re.compile(r"\d\w*|[A-Za-z_]\w*|&&|\|\||[=!<>]=|<<|>>|\S")
_COND_LEVELS = (("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%"))


def _eval_condition(expr: str, defined: Mapping[str, int | None]) -> bool:
    """An #if / #elif condition; unknown macros are 0, and an unreadable condition is false."""
    expr = re.sub(
        r"\bdefined\s*\(\s*(\w+)\s*\)|\bdefined\s+(\w+)",
        lambda m: " 1 " if (m.group(1) or m.group(2)) in defined else " 0 ",
        expr,
    )
    tokens = _COND_TOKEN.findall(expr)
    pos = 0

    def primary() -> int:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            value = binary(0)
            if tokens[pos] != ")":
                raise ValueError(expr)
            pos += 1
            return value
        if tok in ("!", "-", "+", "~"):
            value = primary()
            return {"!": int(not value), "-": -value, "+": value, "~": ~value}[tok]
        if tok[0].isdigit():
            value = _int_value(tok)
            if value is None:
                raise ValueError(expr)
            return value
        if _IDENT.fullmatch(tok):
            return defined.get(tok) or 0
        raise ValueError(expr)

    def binary(level: int) -> int:
        nonlocal pos
        if level == len(_COND_LEVELS):
            return primary()
        value = binary(level + 1)
        while pos < len(tokens) and tokens[pos] in _COND_LEVELS[level]:
            op = tokens[pos]
            pos += 1
            right = binary(level + 1)
            value = _apply(op, value, right)
        return value

    try:
        value = binary(0)
        return pos == len(tokens) and bool(value)
    except (IndexError, ValueError, ZeroDivisionError, RecursionError):
        return False


def _apply(op: str, a: int, b: int) -> int:
    if op in ("/", "%"):
        return int(a / b) if op == "/" else a - int(a / b) * b  # C truncation
    return int(
        {
            "||": lambda: a or b, "&&": lambda: a and b, "==": lambda: a == b, "!=": lambda: a != b,
            "<": lambda: a < b, ">": lambda: a > b, "<=": lambda: a <= b, ">=": lambda: a >= b,
            "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
        }[op]()
    )


# --------------------------------------------------------------------------------------------
# Integer constants: literals, #defines, const / constexpr integers, enum members.

_INT_LITERAL = re.compile(r"(0[xX][0-9a-fA-F]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)(?:[uU](?:ll|LL|l|L)?|(?:ll|LL|l|L)[uU]?)?")


def _int_value(text: str) -> int | None:
    """The value of an integer literal, possibly negated or parenthesised; None otherwise."""
    text = text.replace("'", "").strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    sign = 1
    if text.startswith("-"):
        sign, text = -1, text[1:].strip()
    m = _INT_LITERAL.fullmatch(text)
    if m is None:
        return None
    digits = m.group(1)
    if digits[:2] in ("0x", "0X", "0b", "0B"):
        return sign * int(digits, 0)
    return sign * int(digits, 8 if digits.startswith("0") and len(digits) > 1 else 10)


_INT_TYPE = r"(?:(?:unsigned|signed|short|long|int|char|size_t|u?int(?:8|16|32|64)_t)\b\s*)+|ap_u?int\s*<[^<>;]*>\s*"
_CONST_DECL = re.compile(
    r"\b(?:const|constexpr)\s+(?:static\s+|const\s+|constexpr\s+)*(?:" + _INT_TYPE + r")(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<init>[^;,{}]*)[;,]"
)
_ENUM = re.compile(r"\benum\b(?:\s+(?:class|struct))?(?:\s+\w+)?(?:\s*:\s*[\w\s]+?)?\s*\{(?P<body>[^{}]*)\}")


def _add_constant(consts: dict[str, int | None], name: str, value: int | None) -> None:
    """A name defined twice with different values (or once not as a literal) is not a known constant."""
    if name in consts and consts[name] != value:
        value = None
    consts[name] = value


def _collect_constants(text: str, consts: dict[str, int | None]) -> None:
    for m in _CONST_DECL.finditer(text):
        _add_constant(consts, m.group("name"), _int_value(m.group("init")))
    for m in _ENUM.finditer(text):
        value: int | None = -1
        for member in m.group("body").split(","):
            name, eq, init = member.partition("=")
            name = name.strip()
            if not _IDENT.fullmatch(name):
                continue
            value = _int_value(init) if eq else (None if value is None else value + 1)
            _add_constant(consts, name, value)


# --------------------------------------------------------------------------------------------
# Tokens, pragmas, brackets.


class _Tok(NamedTuple):
    kind: str  # "id", "num", "str", "op", or "pragma" (text: the words after HLS)
    text: str
    line: int


class _Pragma(NamedTuple):
    kind: str  # upper case: PIPELINE, UNROLL, DATAFLOW, INTERFACE, ...
    flags: frozenset[str]  # bare words, lower case (m_axi, off)
    opts: dict[str, str]  # key (lower case) -> value
    line: int

    @property
    def enabled(self) -> bool:  # PIPELINE off / UNROLL off=true switch the directive off
        return "off" not in self.flags and self.opts.get("off", "false").lower() not in ("true", "1")


def _parse_pragma(words: str, line: int) -> _Pragma:
    parts = re.sub(r"\s*=\s*", "=", words.strip()).split()
    opts, flags = {}, set()
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if eq:
            opts[key.lower()] = value
        else:
            flags.add(part.lower())
    return _Pragma(parts[0].upper() if parts else "", frozenset(flags), opts, line)


_PRAGMA_LINE = re.compile(r"^\s*#\s*pragma\s+HLS\b(.*)$", re.IGNORECASE)
_TOKEN = re.compile(
    r"(?P<num>(?:0[xX][0-9a-fA-F']+|0[bB][01']+|\d[\d']*\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)[uUlLfF]*)"
    r"|(?P<id>[A-Za-z_]\w*)"
    r"|(?P<str>\"[^\"]*\"|'[^']*')"
    r"|(?P<op><<=|>>=|::|<<|>>|->|\+\+|--|&&|\|\||[-+*/%&|^!=<>]=|\S)"
)


def _tokenize(lines: list[str]) -> list[_Tok]:
    """Tokens of the active lines; `#pragma HLS x` and `ADMM_PRAGMA(HLS x)` both become pragma tokens."""
    toks: list[_Tok] = []
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("#"):
            m = _PRAGMA_LINE.match(line)
            if m:
                toks.append(_Tok("pragma", m.group(1).strip(), number))
            continue
        pos = 0
        while (m := _TOKEN.search(line, pos)) is not None:
            pos = m.end()
            if m.group() == _PRAGMA_MACRO:
                inner, end = _parenthesised(line, pos)
                if inner is not None:
                    pos = end
                    words = re.match(r"\s*HLS\b(.*)$", inner, re.IGNORECASE | re.DOTALL)
                    if words:
                        toks.append(_Tok("pragma", words.group(1).strip(), number))
                    continue
            toks.append(_Tok(m.lastgroup or "op", m.group(), number))
    return toks


def _parenthesised(line: str, pos: int) -> tuple[str | None, int]:
    """The text inside the (balanced) parentheses that open at `pos` (after spaces), and its end."""
    start = len(line) - len(line[pos:].lstrip())
    if start >= len(line) or line[start] != "(":
        return None, pos
    depth = 0
    for i in range(start, len(line)):
        depth += {"(": 1, ")": -1}.get(line[i], 0)
        if depth == 0:
            return line[start + 1 : i], i + 1
    return None, pos


_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}


def _pair_brackets(toks: list[_Tok]) -> tuple[dict[int, int], list[int]]:
    """Matching bracket indices (both ways), and per token the index of its innermost enclosing `{`."""
    match: dict[int, int] = {}
    stack: list[int] = []
    for k, t in enumerate(toks):
        if t.kind != "op":
            continue
        if t.text in _OPENERS:
            stack.append(k)
        elif t.text in _CLOSERS:
            for d in range(len(stack) - 1, -1, -1):  # a stray closer is skipped, not fatal
                if toks[stack[d]].text == _CLOSERS[t.text]:
                    match[stack[d]], match[k] = k, stack[d]
                    del stack[d:]
                    break
    scope: list[int] = []
    braces: list[int] = []
    for k, t in enumerate(toks):
        scope.append(braces[-1] if braces else -1)
        if t.kind == "op" and t.text == "{":
            braces.append(k)
        elif t.kind == "op" and t.text == "}" and k in match:
            while braces and braces[-1] >= match[k]:
                braces.pop()
    return match, scope


def _snippet(toks: Iterable[_Tok]) -> str:
    """Tokens as readable C++ (for messages)."""
    text = " ".join(t.text for t in toks)
    text = re.sub(r" ?([\[\]().]|->|::) ?", r"\1", text)
    return re.sub(r" ?, ?", ", ", text).strip()


# --------------------------------------------------------------------------------------------
# The code model: functions (with parameters) and for loops (with their pragmas) of one file.


@dataclass
class _Param:
    name: str | None
    line: int
    const: bool
    array: bool
    pointer: bool
    ref: bool
    stream: bool

    @property
    def port(self) -> bool:  # passes data by address (not a scalar by value)
        return self.array or self.pointer or self.ref or self.stream


@dataclass
class _Func:
    name: str
    unit: "_Unit"
    params: list[_Param]
    open: int  # index of the body's `{`
    close: int  # index of its `}`
    line: int


@dataclass
class _Loop:
    at: int  # index of `for`
    lp: int  # header parentheses
    rp: int
    start: int  # body token range, inclusive (braces included)
    end: int
    line: int
    label: str | None
    pragmas: list[_Pragma]
    parts: list[tuple[int, int]] | None  # init, condition, increment: [start, end) token ranges

    @property
    def name(self) -> str:
        return self.label or f"at line {self.line}"

    def carries(self, kind: str) -> bool:
        return any(p.kind == kind and p.enabled for p in self.pragmas)


class _Unit:
    """One firmware file: tokens of its active code, bracket pairs, functions and loops."""

    def __init__(self, path: str, lines: list[str]):
        self.path = path
        self.lines = lines
        self.toks = _tokenize(lines)
        self.match, self.scope = _pair_brackets(self.toks)
        self.pragmas_in: dict[int, list[_Pragma]] = {}  # `{` index -> the pragmas directly in that scope
        for k, t in enumerate(self.toks):
            if t.kind == "pragma":
                self.pragmas_in.setdefault(self.scope[k], []).append(_parse_pragma(t.text, t.line))
        self.functions = self._find_functions()
        self.loops = self._find_loops()

    def text(self, k: int) -> str:
        return self.toks[k].text if 0 <= k < len(self.toks) else ""

    def _find_functions(self) -> list[_Func]:
        funcs, k = [], 0
        while k < len(self.toks):
            func = self._function_at(k) if self.text(k) == "{" else None
            if func is not None:
                funcs.append(func)
                k = func.close
            k += 1
        return funcs

    def _function_at(self, k: int) -> _Func | None:
        """The function whose body opens at `{` k: `name(params) [const] {`."""
        close = self.match.get(k)
        j = k - 1
        while self.text(j) in ("const", "noexcept", "override", "final"):
            j -= 1
        if close is None or self.text(j) != ")" or j not in self.match:
            return None
        lp = self.match[j]
        name = self.toks[lp - 1] if lp > 0 else None
        if name is None or name.kind != "id" or name.text in _KEYWORDS:
            return None
        params = [_param(self, item) for item in _split_commas(self, lp + 1, j, angle=True)]
        params = [p for p in params if p is not None]
        return _Func(name.text, self, params, k, close, name.line)

    def function_at(self, k: int) -> _Func | None:
        return next((f for f in self.functions if f.open < k < f.close), None)

    def _find_loops(self) -> list[_Loop]:
        loops = []
        for k, t in enumerate(self.toks):
            if t.kind != "id" or t.text != "for" or self.text(k + 1) != "(" or k + 1 not in self.match:
                continue
            lp, rp = k + 1, self.match[k + 1]
            start = rp + 1
            if start >= len(self.toks):
                continue
            braced = self.text(start) == "{" and start in self.match
            end = self.match[start] if braced else self.stmt_end(start)
            label = None
            if self.text(k - 1) == ":" and k >= 2 and self.toks[k - 2].kind == "id" and self.text(k - 3) not in ("case", "?"):
                label = self.toks[k - 2].text
            semis = [j for j in _top_level(self, lp + 1, rp) if self.text(j) == ";"]
            parts = None
            if len(semis) == 2:
                parts = [(lp + 1, semis[0]), (semis[0] + 1, semis[1]), (semis[1] + 1, rp)]
            pragmas = self.pragmas_in.get(start, []) if braced else []
            loops.append(_Loop(k, lp, rp, start, end, t.line, label, pragmas, parts))
        return loops

    def stmt_end(self, k: int, depth: int = 0) -> int:
        """Index of the last token of the statement that starts at token k."""
        n = len(self.toks)
        if k >= n or depth > 200:
            return n - 1
        t = self.text(k)
        if t == "{":
            return self.match.get(k, n - 1)
        if t in ("for", "while", "if", "switch") and self.text(k + 1) == "(" and k + 1 in self.match:
            end = self.stmt_end(self.match[k + 1] + 1, depth + 1)
            if t == "if" and self.text(end + 1) == "else":
                end = self.stmt_end(end + 2, depth + 1)
            return end
        for j in _top_level(self, k, n):
            if self.text(j) == ";":
                return j
        return n - 1

    def innermost_loop(self, k: int) -> _Loop | None:
        """The innermost loop whose body holds token k."""
        around = [loop for loop in self.loops if loop.start <= k <= loop.end]
        return min(around, key=lambda loop: loop.end - loop.start, default=None)

    def in_loop_header(self, k: int) -> bool:
        return any(loop.lp < k < loop.rp for loop in self.loops)


def _top_level(unit: _Unit, start: int, end: int) -> Iterator[int]:
    """Indices in [start, end) outside nested brackets (each bracket group yields only its opener)."""
    k = start
    while k < end:
        yield k
        if unit.text(k) in _OPENERS and k in unit.match and unit.match[k] > k:
            k = unit.match[k]
        k += 1


def _split_commas(unit: _Unit, start: int, end: int, angle: bool = False) -> list[list[int]]:
    """Token indices of the comma-separated items in [start, end); `angle`: commas in <...> don't split."""
    items: list[list[int]] = []
    current: list[int] = []
    depth = 0
    for k in _top_level(unit, start, end):
        text = unit.text(k)
        group = range(k, unit.match[k] + 1) if text in _OPENERS and k in unit.match else [k]
        if angle and text == "<":
            depth += 1
        elif angle and text in (">", ">>"):
            depth = max(0, depth - len(text))
        elif text == "," and depth == 0:
            items.append(current)
            current = []
            continue
        current.extend(group)
    if current or items:
        items.append(current)
    return items


def _param(unit: _Unit, item: list[int]) -> _Param | None:
    """A parameter declaration: its name and how it passes data (array, pointer, reference, stream)."""
    toks = [unit.toks[i] for i in item]
    texts = [t.text for t in toks]
    if "=" in texts:  # a default value
        toks = toks[: texts.index("=")]
    if not toks or [t.text for t in toks] == ["void"]:
        return None
    outer, depth = [], 0  # tokens outside template arguments
    for t in toks:
        if t.text == "<":
            depth += 1
        elif t.text in (">", ">>"):
            depth = max(0, depth - len(t.text))
        elif depth == 0:
            outer.append(t)
    words = [t.text for t in outer]
    if "[" in words:
        before = outer[words.index("[") - 1] if words.index("[") > 0 else None
        name = before.text if before is not None and before.kind == "id" else None
    else:
        ids = [t for t in outer if t.kind == "id"]
        name = ids[-1].text if len(outer) > 1 and ids and ids[-1] is outer[-1] and ids[-1].text not in _TYPE_WORDS else None
    return _Param(
        name=name,
        line=toks[0].line,
        const="const" in words,
        array="[" in words,
        pointer="*" in words,
        ref="&" in words or "&&" in words,
        stream="stream" in words,
    )


# --------------------------------------------------------------------------------------------
# The project: every firmware file, the constants they define, and the functions by name.


def _is_firmware(path: str) -> bool:
    norm = path.replace("\\", "/")
    while norm.startswith("./"):
        norm = norm[2:]
    return norm.startswith("firmware/") and norm.endswith((".cpp", ".h"))


class _Project:
    def __init__(self, files: Mapping[str, str | bytes]):
        sources = {}
        for path, text in files.items():
            if isinstance(path, str) and _is_firmware(path):
                if isinstance(text, bytes):
                    text = text.decode("utf-8", "replace")
                if isinstance(text, str):
                    sources[path] = _strip_comments_and_literals(text)
        # A file sees the macros of the others too (they are #included): find each file's own first.
        own = {}
        for path, text in sources.items():
            try:
                own[path] = _preprocess(text, _PREDEFINED)[1]
            except Exception:  # unreadable: the file's macros are unknown
                own[path] = {}
        self.units: list[_Unit] = []
        self.consts: dict[str, int | None] = {}
        for path, text in sources.items():
            visible = dict(_PREDEFINED)
            for other, macros in own.items():
                if other != path:
                    visible.update(macros)
            try:
                lines, macros = _preprocess(text, visible)
                unit = _Unit(path, lines)
            except Exception:  # an unreadable file is skipped
                continue
            for name, value in macros.items():
                _add_constant(self.consts, name, value)
            _collect_constants("\n".join(lines), self.consts)
            self.units.append(unit)
        self.funcs: dict[str, _Func] = {}
        for unit in self.units:
            for func in unit.functions:
                self.funcs.setdefault(func.name, func)
        self._directions: dict[tuple[int, int], tuple[bool, bool]] = {}

    def constant(self, tok: _Tok) -> int | None:
        """The value of a literal or a known constant name."""
        if tok.kind == "num":
            return _int_value(tok.text)
        return self.consts.get(tok.text) if tok.kind == "id" else None

    def dataflow_functions(self) -> list[_Func]:
        return [
            f for u in self.units for f in u.functions
            if any(p.kind == "DATAFLOW" and p.enabled for p in u.pragmas_in.get(f.open, []))
        ]

    def top_function(self, top: str) -> _Func | None:
        candidates = [f for u in self.units for f in u.functions if f.name == top]
        home = [f for f in candidates if f.unit.path.replace("\\", "/").endswith(f"firmware/{top}.cpp")]
        return (home or candidates or [None])[0]

    def direction(self, callee: _Func | None, index: int) -> tuple[bool, bool]:
        """(reads, writes) of the callee through its parameter `index`; unknown: both."""
        if callee is None or index >= len(callee.params):
            return True, True
        key = (id(callee), index)
        if key not in self._directions:
            self._directions[key] = _param_direction(callee, callee.params[index])
        return self._directions[key]


def _param_direction(func: _Func, param: _Param) -> tuple[bool, bool]:
    if param.stream:
        return _stream_use(func, param.name) if param.name else (False, False)
    if param.array or param.pointer or param.ref:
        return (True, False) if param.const else (False, True)
    return True, False  # a scalar by value


def _stream_use(func: _Func, name: str) -> tuple[bool, bool]:
    """Whether a function body reads / writes its stream parameter `name` (passing it on: both)."""
    unit = func.unit
    reads = writes = False
    for k in range(func.open + 1, func.close):
        if unit.toks[k].kind != "id" or unit.text(k) != name or unit.text(k - 1) in (".", "->", "::"):
            continue
        j = k + 1
        if unit.text(j) == "[" and j in unit.match:  # an array of streams
            j = unit.match[j] + 1
        after, member = unit.text(j), unit.text(j + 1)
        if after in (".", "->"):
            reads |= member in ("read", "read_nb")
            writes |= member in ("write", "write_nb")
        elif after in (">>", "<<"):
            reads |= after == ">>"
            writes |= after == "<<"
        else:
            reads = writes = True
    return reads, writes


# --------------------------------------------------------------------------------------------
# Rule `divider`.


def _check_dividers(project: _Project, unit: _Unit) -> Iterator[Violation]:
    for k, t in enumerate(unit.toks):
        if t.kind != "op" or t.text not in ("/", "%", "/=", "%="):
            continue
        loop = _loop_around(unit, k)
        if loop is None:
            continue  # outside loops a divider runs once: fine
        ok, operand = _divisor(project, unit, k + 1)
        if not ok:
            func = unit.function_at(k)
            where = func.name if func else "file scope"
            yield Violation(
                "divider", unit.path, t.line,
                f"{where}: '{t.text} {operand}' in loop {loop.name} is not by a power-of-two constant "
                "(Vitis infers a divider)",
            )


def _loop_around(unit: _Unit, k: int) -> _Loop | None:
    """The innermost loop whose body, condition or increment holds token k."""
    around = [
        loop for loop in unit.loops
        if loop.start <= k <= loop.end or (loop.parts and loop.parts[1][0] <= k < loop.parts[2][1])
    ]
    return min(around, key=lambda loop: loop.end - loop.lp, default=None)


def _divisor(project: _Project, unit: _Unit, k: int) -> tuple[bool, str]:
    """Whether the primary expression at k is a power-of-two constant, and its text."""
    sign = 1
    while unit.text(k) in ("-", "+"):
        sign = -sign if unit.text(k) == "-" else sign
        k += 1
    if k >= len(unit.toks):
        return False, "?"
    prefix = "-" if sign < 0 else ""
    if unit.text(k) == "(":
        end = unit.match.get(k, len(unit.toks) - 1)
        inner = unit.toks[k + 1 : end]
        while len(inner) >= 2 and inner[0].text == "(" and inner[-1].text == ")":
            inner = inner[1:-1]
        value = project.constant(inner[0]) if len(inner) == 1 else None
        shown = prefix + _snippet(unit.toks[k : end + 1])
    else:
        tok = unit.toks[k]
        follows = unit.text(k + 1) in ("(", "[", ".", "->", "::")  # a call, element or member: not a name
        value = None if follows else project.constant(tok)
        shown = prefix + tok.text + (unit.text(k + 1) + "..." if follows else "")
    if value is not None:
        value *= sign
    return value is not None and value > 0 and value & (value - 1) == 0, shown


# --------------------------------------------------------------------------------------------
# Rule `pe-loop`.


def _check_pe_loops(unit: _Unit) -> Iterator[Violation]:
    for loop in unit.loops:
        if not loop.carries("UNROLL"):
            continue
        inner = [m for m in unit.loops if loop.start < m.at <= loop.end and m.carries("PIPELINE")]
        if inner:
            func = unit.function_at(loop.at)
            yield Violation(
                "pe-loop", unit.path, loop.line,
                f"{func.name if func else 'file scope'}: unrolled loop {loop.name} contains pipelined loop "
                f"{inner[0].name} (line {inner[0].line}); Vitis makes one copy per unrolled iteration and runs "
                "them one after another, so the PEs are not parallel (pipeline the outer loop, unroll inside it)",
            )


# --------------------------------------------------------------------------------------------
# The dataflow region: declarations and process calls; rules `channel` and `static-array`.


@dataclass
class _Call:
    name: str
    args: list[list[int]]  # token indices of each argument
    line: int

    def label(self) -> str:
        return f"{self.name} (line {self.line})"


@dataclass
class _Region:
    calls: list[_Call] = field(default_factory=list)
    arrays: dict[str, int] = field(default_factory=dict)  # local array -> line
    streams: dict[str, int] = field(default_factory=dict)  # local stream -> line
    statics: list[tuple[str, int]] = field(default_factory=list)  # static arrays: (name, line)


def _statements(unit: _Unit, start: int, end: int) -> Iterator[list[int]]:
    """The statements in [start, end) as token index lists; nested blocks are flattened."""
    current: list[int] = []
    for k in _top_level(unit, start, end):
        t = unit.toks[k]
        if t.kind == "pragma" or (t.kind == "op" and t.text in (";", "{", "}")):
            if current:
                yield current
            current = []
            if t.text == "{" and k in unit.match:  # _top_level skipped the block: walk into it
                yield from _statements(unit, k + 1, min(unit.match[k], end))
            continue
        current.extend(range(k, unit.match[k] + 1) if t.text in ("(", "[") and k in unit.match else [k])
    if current:
        yield current


def _region(unit: _Unit, func: _Func) -> _Region:
    region = _Region()
    for stmt in _statements(unit, func.open + 1, func.close):
        texts = [unit.text(i) for i in stmt]
        line = unit.toks[stmt[0]].line
        call = _as_call(unit, stmt)
        if call is not None:
            region.calls.append(call)
        elif (name := _stream_decl(texts)) is not None:
            region.streams[name] = line
        elif (name := _array_decl(texts)) is not None:
            region.arrays[name] = line
            if texts[0] == "static":
                region.statics.append((name, line))
    return region


def _as_call(unit: _Unit, stmt: list[int]) -> _Call | None:
    """`name(args)` (or `ns::name(args)`) as a whole statement."""
    j = 0
    while j + 2 < len(stmt) and unit.toks[stmt[j]].kind == "id" and unit.text(stmt[j + 1]) == "::":
        j += 2
    if j + 1 >= len(stmt):
        return None
    name, lp = unit.toks[stmt[j]], stmt[j + 1]
    if name.kind != "id" or name.text in _KEYWORDS or unit.text(lp) != "(" or unit.match.get(lp) != stmt[-1]:
        return None
    return _Call(name.text, _split_commas(unit, lp + 1, stmt[-1]), name.line)


def _stream_decl(texts: list[str]) -> str | None:
    """The name declared by `[static] hls::stream<T> name...`."""
    for s in range(min(len(texts) - 1, 4)):
        if texts[s] == "stream" and texts[s + 1] == "<":
            depth = 0
            for j in range(s + 1, len(texts)):
                depth += {"<": 1, ">": -1, ">>": -2}.get(texts[j], 0)
                if depth <= 0:
                    name = texts[j + 1] if j + 1 < len(texts) else ""
                    return name if _IDENT.fullmatch(name) else None
            return None
    return None


def _array_decl(texts: list[str]) -> str | None:
    """The name declared by `[static] [const] T name[...]...` (not an element assignment)."""
    if "[" not in texts:
        return None
    b = texts.index("[")
    if b < 2 or not _IDENT.fullmatch(texts[b - 1]) or texts[b - 1] in _KEYWORDS:
        return None
    if any(t in ("=", "(", ")", ".", "->", "return") for t in texts[: b - 1]):
        return None
    return texts[b - 1]


def _arg_names(unit: _Unit, arg: list[int]) -> list[str]:
    return [unit.text(i) for i in arg if unit.toks[i].kind == "id"]


def _check_dataflow_region(project: _Project, func: _Func) -> Iterator[Violation]:
    unit = func.unit
    region = _region(unit, func)
    for name, line in region.statics:
        yield Violation(
            "static-array", unit.path, line,
            f"{func.name}: static array '{name}' in the dataflow region (shared state, not a channel: "
            "Vitis serializes the processes)",
        )
    # Who touches each variable: variable -> {call index: [reads, writes]}.
    known = set(region.arrays) | set(region.streams) | {p.name for p in func.params if p.name}
    touched: dict[str, dict[int, list[bool]]] = {}
    for ci, call in enumerate(region.calls):
        callee = project.funcs.get(call.name)
        for index, arg in enumerate(call.args):
            reads, writes = project.direction(callee, index)
            for name in _arg_names(unit, arg):
                if name in known:
                    use = touched.setdefault(name, {}).setdefault(ci, [False, False])
                    use[0] |= reads
                    use[1] |= writes
    calls = region.calls
    for p in func.params:
        if not p.name or not p.port or p.name in region.arrays or p.name in region.streams:
            continue
        users = sorted(touched.get(p.name, {}))
        if len(users) == 0:
            yield Violation(
                "channel", unit.path, p.line,
                f"{func.name}: top parameter '{p.name}' is not passed to any process (each top port feeds exactly one)",
            )
        elif len(users) > 1:
            yield Violation(
                "channel", unit.path, calls[users[1]].line,
                f"{func.name}: top parameter '{p.name}' is passed to {len(users)} processes "
                f"({', '.join(calls[i].label() for i in users)}); each top port feeds exactly one",
            )
    for name in list(region.arrays) + list(region.streams):
        uses = touched.get(name, {})
        for role, slot in (("writers", 1), ("readers", 0)):
            procs = sorted(ci for ci, use in uses.items() if use[slot])
            if len(procs) > 1:
                yield Violation(
                    "channel", unit.path, calls[procs[1]].line,
                    f"{func.name}: channel '{name}' has {len(procs)} {role} "
                    f"({', '.join(calls[i].label() for i in procs)}); a channel has one writer and one reader",
                )
        if name in region.arrays:
            for ci, (reads, writes) in sorted(uses.items()):
                if reads and writes:
                    yield Violation(
                        "channel", unit.path, calls[ci].line,
                        f"{func.name}: channel '{name}' is both read and written by {calls[ci].label()}; "
                        "a channel goes one way",
                    )


# --------------------------------------------------------------------------------------------
# Rule `maxi-burst`.


def _maxi_ports(func: _Func) -> dict[str, int]:
    """The top parameters named by `INTERFACE m_axi port=NAME` pragmas -> the pragma's line."""
    unit = func.unit
    names = {p.name for p in func.params if p.name}
    ports: dict[str, int] = {}
    for k in range(func.open + 1, func.close):
        if unit.toks[k].kind != "pragma":
            continue
        pragma = _parse_pragma(unit.text(k), unit.toks[k].line)
        mode = pragma.opts.get("mode", "").lower()
        if pragma.kind == "INTERFACE" and (mode == "m_axi" or "m_axi" in pragma.flags):
            port = pragma.opts.get("port", "")
            if port in names:
                ports.setdefault(port, pragma.line)
    return ports


def _check_maxi_bursts(project: _Project, top: _Func) -> Iterator[Violation]:
    unit = top.unit
    calls = _region(unit, top).calls
    for port, line in _maxi_ports(top).items():
        users = [c for c in calls if any(port in _arg_names(unit, arg) for arg in c.args)]
        if not users:
            yield Violation(
                "maxi-burst", unit.path, line,
                f"{top.name}: m_axi port '{port}' is not passed to any process (each m_axi port feeds exactly one)",
            )
        elif len(users) > 1:
            yield Violation(
                "maxi-burst", unit.path, users[1].line,
                f"{top.name}: m_axi port '{port}' is passed to {len(users)} processes "
                f"({', '.join(c.label() for c in users)}); each m_axi port feeds exactly one",
            )
        for call in users:
            yield from _check_port_use(project, unit, call, port)


def _check_port_use(project: _Project, unit: _Unit, call: _Call, port: str) -> Iterator[Violation]:
    """The process that receives m_axi `port` reads it only as bursts."""
    callee = project.funcs.get(call.name)
    for index, arg in enumerate(call.args):
        if port not in _arg_names(unit, arg):
            continue
        if len(arg) != 1:
            yield Violation(
                "maxi-burst", unit.path, call.line,
                f"m_axi port '{port}' is passed to {call.name} as '{_snippet(unit.toks[i] for i in arg)}' "
                "(pass the pointer itself)",
            )
        elif callee is None or index >= len(callee.params):
            yield Violation(
                "maxi-burst", unit.path, call.line,
                f"m_axi port '{port}' is passed to {call.name}, whose definition (parameter {index + 1}) "
                "is not in the firmware: its accesses cannot be checked",
            )
        elif callee.params[index].name:
            yield from _check_pointer_uses(project, callee, callee.params[index].name, port)


def _check_pointer_uses(project: _Project, func: _Func, name: str, port: str) -> Iterator[Violation]:
    unit = func.unit
    for k in range(func.open + 1, func.close):
        if unit.toks[k].kind != "id" or unit.text(k) != name or unit.text(k - 1) in (".", "->", "::"):
            continue
        problem, shown = _burst_problem(project, unit, k)
        if problem:
            yield Violation(
                "maxi-burst", unit.path, unit.toks[k].line,
                f"{func.name}: m_axi port '{port}' is used as '{shown}': {problem}; only {name}[i] or "
                f"{name}[K + i] with i the counter of a pipelined for (int i = K0; i < N; ++i) loop bursts",
            )


def _burst_problem(project: _Project, unit: _Unit, k: int) -> tuple[str | None, str]:
    """Why the use of an m_axi pointer at token k does not burst (None: it does), and its text."""
    if unit.text(k + 1) != "[" or k + 1 not in unit.match:
        around = unit.toks[max(k - 1, 0) : k + 2]
        around = [t for t in around if t.text not in ("(", ")", ",", ";", "{", "}")]
        return "not an indexed read (dereference, pointer arithmetic or passed on)", _snippet(around)
    close = unit.match[k + 1]
    shown = _snippet(unit.toks[k : close + 1])
    if unit.in_loop_header(k):
        return "in a loop header", shown
    loop = unit.innermost_loop(k)
    if loop is None:
        return "outside a for loop", shown
    counter = _canonical_counter(project, unit, loop)
    if counter is None:
        return f"loop {loop.name} is not of the form for (int i = K0; i < N; ++i)", shown
    index = unit.toks[k + 2 : close]
    texts = [t.text for t in index]
    if not (
        texts == [counter]
        or (len(index) == 3 and texts[1] == "+" and texts[2] == counter and project.constant(index[0]) is not None)
        or (len(index) == 3 and texts[1] == "+" and texts[0] == counter and project.constant(index[2]) is not None)
    ):
        return f"the index is not {counter} or K + {counter} ({counter}: the counter of loop {loop.name})", shown
    if not loop.carries("PIPELINE"):
        return f"loop {loop.name} has no HLS PIPELINE", shown
    return None, shown


_COUNTER_TYPE = re.compile(r"(?:(?:unsigned|signed|short|long|int|size_t|u?int(?:8|16|32|64)_t) ?)+|ap_u?int < .+ >")


def _canonical_counter(project: _Project, unit: _Unit, loop: _Loop) -> str | None:
    """The counter i of `for (T i = K; i < N; ++i | i++ | i += 1)`, None for any other header."""
    if loop.parts is None:
        return None
    init, cond, step = ([unit.toks[j] for j in range(a, b)] for a, b in loop.parts)
    texts = [t.text for t in init]
    if "=" not in texts:
        return None
    eq = texts.index("=")
    if eq < 2 or not _COUNTER_TYPE.fullmatch(" ".join(texts[: eq - 1])) or init[eq - 1].kind != "id":
        return None
    i = texts[eq - 1]
    start = init[eq + 1 :]
    if start and start[0].text == "-":  # a negative start
        start = start[1:]
    if len(start) != 1 or project.constant(start[0]) is None:
        return None
    if len(cond) != 3 or cond[0].text != i or cond[1].text != "<" or cond[2].kind not in ("id", "num"):
        return None
    if [t.text for t in step] not in (["++", i], [i, "++"], [i, "+=", "1"]):
        return None
    return i
