"""``hailong contract ...``: the wire contract for queue-system vendors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import click

from .contract import SCHEMA_MODELS, ContractError, json_schemas, parse_payload


@click.group()
def contract() -> None:
    """The MQTT wire contract (topics, payload schemas)."""


@contract.command("schema")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to write one JSON Schema file per payload into.")
def schema(out_dir: Path) -> None:
    """Write JSON Schema (draft 2020-12) files for every payload."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, doc in json_schemas().items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"wrote {path}")


@contract.command("validate")
@click.argument("kind", type=click.Choice(sorted(SCHEMA_MODELS)))
@click.argument("file", type=click.File("rb"))
def validate(kind: str, file: BinaryIO) -> None:
    """Validate one payload FILE ('-' for stdin) as KIND; exit 1 with the reason if invalid."""
    try:
        parse_payload(SCHEMA_MODELS[kind], file.read())
    except ContractError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("valid")
