"""A subset of Go's text/template, enough for Grafana alert annotations and notification templates.

Supported (as Go behaves): text and ``{{ pipeline }}`` actions with ``{{-``/``-}}`` trimming and
``{{/* comments */}}``; ``if``/``else if``/``else``/``end``; ``range``/``else``/``end`` (``.`` is the
element); ``define``/``template``; ``$x := pipeline``; pipelines ``a | f b`` (the previous result is
the last argument); operands ``.A.B``, ``$x.A``, "strings", `raw strings`, numbers; functions
passed in plus ``eq ne not and or len reReplaceAll``. A missing map key is Go's invalid value: it
prints ``<no value>`` (missingkey=invalid, as Grafana sets) and is false in ``if``.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class _Missing:
    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


@dataclass
class _Node:
    kind: str  # text | action | if | range | define | template | assign
    text: str = ""
    branches: list[tuple[str, list[_Node]]] = field(default_factory=list)  # (pipeline, body); "" = else


class GoTemplate:
    def __init__(self, source: str) -> None:
        self.defines: dict[str, list[_Node]] = {}
        tokens = self._lex(source)
        self.root, rest = self._parse(tokens, 0, ())
        if rest != len(tokens):
            raise ValueError(f"unexpected {{{{{tokens[rest][1]}}}}}")

    @staticmethod
    def _lex(src: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        pos = 0
        for m in _ACTION.finditer(src):
            text = src[pos:m.start()]
            if m.group(1):
                text = text.rstrip()
            if out and out[-1][0] == "trim":
                out.pop()
                text = text.lstrip()
            out.append(("text", text))
            body = m.group(2).strip()
            if not body.startswith("/*"):
                out.append(("action", body))
            if m.group(3):
                out.append(("trim", ""))
            pos = m.end()
        text = src[pos:]
        if out and out[-1][0] == "trim":
            out.pop()
            text = text.lstrip()
        out.append(("text", text))
        return out

    def _parse(self, toks: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list[_Node], int]:
        nodes: list[_Node] = []
        while i < len(toks):
            kind, body = toks[i]
            if kind == "text":
                nodes.append(_Node("text", body))
                i += 1
                continue
            word = body.split(None, 1)[0] if body else ""
            if word in stop:
                return nodes, i
            rest = body[len(word):].strip()
            if word in ("if", "range"):
                node = _Node(word)
                cond = rest
                while True:
                    inner, i = self._parse(toks, i + 1, ("else", "end"))
                    node.branches.append((cond, inner))
                    kw = toks[i][1]
                    if kw == "end":
                        break
                    after = kw[len("else"):].strip()
                    cond = after[len("if"):].strip() if after.startswith("if ") else ""
                    if cond == "" and after:
                        raise ValueError(f"unsupported {{{{{kw}}}}}")
                    if cond == "" and not after:
                        inner, i = self._parse(toks, i + 1, ("end",))
                        node.branches.append(("", inner))
                        break
                nodes.append(node)
                i += 1
            elif word == "define":
                inner, i = self._parse(toks, i + 1, ("end",))
                self.defines[ast.literal_eval(rest)] = inner
                i += 1
            elif word == "template":
                nodes.append(_Node("template", rest))
                i += 1
            elif re.match(r"^\$\w+\s*:?=", body):
                nodes.append(_Node("assign", body))
                i += 1
            else:
                nodes.append(_Node("action", body))
                i += 1
        return nodes, i


def _format(v: Any) -> str:
    if v is MISSING or v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):  # fmt %v: strconv 'g' shortest, exponent when exp < -4 or >= 21... 6
        if math.isnan(v):
            return "NaN"
        if v == int(v) and abs(v) < 1e6:
            return str(int(v))
        return f"{v:g}"
    return str(v)


def _truth(v: Any) -> bool:
    if v is MISSING or v is None:
        return False
    if isinstance(v, (str, list, dict, tuple)):
        return len(v) > 0
    return bool(v)


def _go_regex_repl(repl: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", repl.replace("\\", "\\\\"))


BUILTINS: dict[str, Callable[..., Any]] = {
    "eq": lambda a, *b: any(a == x for x in b), "ne": lambda a, b: a != b, "not": lambda a: not _truth(a),
    "and": lambda *a: next((x for x in a if not _truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truth(x)), a[-1]), "len": lambda a: len(a),
    "reReplaceAll": lambda pattern, repl, text: re.sub(pattern, _go_regex_repl(repl), _format(text), flags=re.ASCII),
}
_ARG = re.compile(r'\s*("(?:[^"\\]|\\.)*"|`[^`]*`|[^\s|]+)')


class _Eval:
    def __init__(self, tmpl: GoTemplate, funcs: dict[str, Callable[..., Any]]) -> None:
        self.tmpl = tmpl
        self.funcs = {**BUILTINS, **funcs}
        self.vars: dict[str, Any] = {}

    def operand(self, tok: str, dot: Any) -> Any:
        if tok.startswith('"'):
            return ast.literal_eval(tok)
        if tok.startswith("`"):
            return tok[1:-1]
        if re.fullmatch(r"-?\d+(\.\d+)?", tok):
            return float(tok) if "." in tok else int(tok)
        if tok.startswith(".") or tok.startswith("$"):
            head, *path = tok.split(".")
            value = dot if head == "" else self.vars.get(head, MISSING)
            for part in path if tok != "." else []:
                value = self.field(value, part)
            return value
        if tok in self.funcs:
            return self.funcs[tok]()
        raise ValueError(f'function "{tok}" not defined')

    @staticmethod
    def field(value: Any, name: str) -> Any:
        if value is MISSING:
            return MISSING
        if isinstance(value, dict):
            return value.get(name, MISSING)
        return getattr(value, name, MISSING)

    def pipeline(self, text: str, dot: Any) -> Any:
        result: Any = MISSING
        for i, command in enumerate(_split_pipes(text)):
            args = [m.group(1) for m in _ARG.finditer(command) if m.group(1).strip()]
            if args[0] in self.funcs:
                values = [self.operand(a, dot) for a in args[1:]]
                if i > 0:
                    values.append(result)
                result = self.funcs[args[0]](*values)
            else:
                if len(args) != 1 or i > 0:
                    raise ValueError(f"cannot evaluate {command!r}")
                result = self.operand(args[0], dot)
        return result

    def run(self, nodes: list[_Node], dot: Any, out: list[str]) -> None:
        for n in nodes:
            if n.kind == "text":
                out.append(n.text)
            elif n.kind == "action":
                out.append(_format(self.pipeline(n.text, dot)))
            elif n.kind == "assign":
                name, expr = re.split(r"\s*:?=\s*", n.text, maxsplit=1)
                self.vars[name] = self.pipeline(expr, dot)
            elif n.kind == "template":
                name, _, arg = n.text.partition(" ")
                self.run(self.tmpl.defines[ast.literal_eval(name)], self.pipeline(arg, dot) if arg else None, out)
            elif n.kind == "if":
                for cond, body in n.branches:
                    if cond == "" or _truth(self.pipeline(cond, dot)):
                        self.run(body, dot, out)
                        break
            elif n.kind == "range":
                (cond, body), *other = n.branches
                items = self.pipeline(cond, dot)
                seq = list(items.values()) if isinstance(items, dict) else list(items or [])
                for item in seq:
                    self.run(body, item, out)
                if not seq and other:
                    self.run(other[0][1], dot, out)


def _split_pipes(text: str) -> list[str]:
    parts, buf, quote = [], "", ""
    for ch in text:
        if quote:
            buf += ch
            if ch == quote:
                quote = ""
        elif ch in "\"`":
            quote = ch
            buf += ch
        elif ch == "|":
            parts.append(buf.strip())
            buf = ""
        else:
            buf += ch
    parts.append(buf.strip())
    return parts


def render(tmpl: GoTemplate, data: Any, funcs: dict[str, Callable[..., Any]]) -> str:
    out: list[str] = []
    _Eval(tmpl, funcs).run(tmpl.root, data, out)
    return "".join(out)
