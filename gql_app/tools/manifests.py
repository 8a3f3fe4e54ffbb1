"""Persisted-document manifests, read and checked for ``gql-app trust-documents``.

Both formats are one JSON object, id -> document: graphql-codegen's client preset
writes ``persisted-documents.json`` keyed by the document's sha256 hex, Relay's
compiler (``persistConfig.file``) keys by its own id (an md5 hex by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLSchema, parse, validate

MAX_ID_CHARS = 200  # the table's column


def read_manifest(path: Path) -> tuple[dict[str, str], list[str]]:
    """The manifest's documents, and what is wrong with it (``path: id: reason``)."""
    try:
        manifest: Any = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        return {}, [f"{path}: not a readable JSON file ({exc})"]
    if not isinstance(manifest, dict):
        return {}, [f"{path}: a manifest is a JSON object of id -> document"]
    documents: dict[str, str] = {}
    problems = []
    for document_id, document in manifest.items():
        if not document_id or len(document_id) > MAX_ID_CHARS:
            problems.append(f"{path}: {document_id!r}: an id has 1 to {MAX_ID_CHARS} characters")
        elif not isinstance(document, str):
            problems.append(f"{path}: {document_id}: the document is not a string")
        else:
            documents[document_id] = document
    return documents, problems


def document_errors(schema: GraphQLSchema, document: str) -> list[str]:
    """Why ``document`` would not run against ``schema`` (syntax, validation); [] if it would."""
    try:
        parsed = parse(document)
    except GraphQLError as error:
        return [error.message]
    return [error.message for error in validate(schema, parsed)]


def check_manifests(schema: GraphQLSchema, paths: list[Path]) -> tuple[dict[str, str], list[str]]:
    """Every document of ``paths`` (id -> document), and every problem found: unreadable
    files, documents that do not validate, one id given two different documents."""
    documents: dict[str, str] = {}
    problems: list[str] = []
    for path in paths:
        found, wrong = read_manifest(path)
        problems += wrong
        for document_id, document in found.items():
            problems += [f"{path}: {document_id}: {e}" for e in document_errors(schema, document)]
            if documents.get(document_id, document) != document:
                problems.append(f"{path}: {document_id}: given another document before")
            documents[document_id] = document
    return documents, problems
