"""Trusted documents (what Relay, Apollo and GraphQL Code Generator call persisted
documents): the operations a shop's own clients send, known at start-up by the sha256
of their text.

PAYQL_TRUSTED_DOCUMENTS names a manifest: a JSON object of sha256 hex hash → document
text, the format GraphQL Code Generator's client preset writes (persisted-documents.json,
with `hashAlgorithm: "sha256"`). Each document is parsed, validated against the schema
and measured against the document limits here, once; a request that names one (by
`documentId`, or Apollo's `extensions.persistedQuery`) gets that parsed document and
skips all three (PayqlSchema._prepare_operation_async). Everything after validation
applies as to any other request: the token, the card-number guard, masked errors.

One part of the limits can still depend on the request: the cost, when a `first` comes
from a variable (`orders(first: $n)`). Such a document is measured again for each
request, with its variables, as any other document would be; that is a walk over a
parsed document, never a parse. Every other document's size is fixed by its text, and
was judged here.

Nothing is registered at run time (no automatic persisted queries): a document is
trusted because it is in the manifest the operator deployed, never because a client
sent it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    IntValueNode,
    NullValueNode,
    OperationDefinitionNode,
    parse,
    specified_rules,
    visit,
)
from graphql.language import Visitor
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext
from strawberry.types.execution import PreExecutionError

from payql.settings import SettingsError
from schema.guards import DocumentLimits, Limits

if TYPE_CHECKING:
    from strawberry import Schema

log = logging.getLogger("payql.graphql")

SETTING = "PAYQL_TRUSTED_DOCUMENTS"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PREFIX = "sha256:"

# Error codes a client may see (extensions.code).
UNKNOWN_DOCUMENT_ID = "UNKNOWN_DOCUMENT_ID"
INVALID_DOCUMENT_ID = "INVALID_DOCUMENT_ID"
DOCUMENT_ID_MISMATCH = "DOCUMENT_ID_MISMATCH"
TRUSTED_DOCUMENTS_ONLY = "TRUSTED_DOCUMENTS_ONLY"
# Apollo's automatic persisted queries: the messages and codes its client acts on
# (NotFound: it sends the query with its hash; NotSupported: it stops sending hashes).
PERSISTED_QUERY_NOT_FOUND = ("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
PERSISTED_QUERY_NOT_SUPPORTED = ("PersistedQueryNotSupported", "PERSISTED_QUERY_NOT_SUPPORTED")


class TrustedDocumentsError(SettingsError):
    """The manifest cannot be used: missing, malformed, or an entry that fails."""


class DocumentRefused(Exception):
    """A request's document id (or its query) is refused: a GraphQL error for it."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def graphql_error(self) -> GraphQLError:
        return GraphQLError(self.message, extensions={"code": self.code})


@dataclass(frozen=True, eq=False)
class TrustedDocument:
    id: str  # the sha256 of `text`, 64 lowercase hex digits
    text: str
    document: DocumentNode
    # A `first` comes from a variable: the cost is measured per request (see above).
    cost_varies: bool


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class TrustedDocuments:
    """The manifest, loaded; empty when PAYQL_TRUSTED_DOCUMENTS is not set."""

    by_id: dict[str, TrustedDocument] = field(default_factory=dict)
    # The same documents by their text: how the schema finds one for a request (the
    # view hands it the trusted text as the query; an identical free query is the
    # same document, and gets the same fast path).
    by_text: dict[str, TrustedDocument] = field(default_factory=dict)
    configured: bool = False
    only: bool = False  # PAYQL_TRUSTED_DOCUMENTS_ONLY: free-form queries are refused

    @classmethod
    def load(
        cls, path: str, schema: Schema, limits: Limits, only: bool = False
    ) -> TrustedDocuments:
        """Read, check and prepare every document of the manifest at `path`; refuse the
        whole manifest, naming the entry, if any entry fails."""
        manifest = _read(path)
        rules = tuple(specified_rules) + tuple(_extra_rules(limits))
        documents = cls(configured=True, only=only)
        for key, text in manifest.items():
            trusted = _prepare(path, key, text, schema, limits, rules)
            documents.by_id[trusted.id] = trusted
            documents.by_text[trusted.text] = trusted
        log.info(
            "%d trusted documents from %s%s",
            len(documents.by_id),
            path,
            " (and only those are accepted)" if only else "",
        )
        return documents

    # -- a request -------------------------------------------------------------------

    def query_for(self, query: Any, document_id: Any, extensions: Any) -> Any:
        """The query text a request stands for: a trusted document's, or its own free
        query when that is allowed. Raises DocumentRefused, with a code, for an unknown
        or malformed id, an id that does not match the query sent with it, or a free
        query where only trusted documents are accepted. Anything else (no query at
        all, a query that is not a string) is returned as it came, for Strawberry to
        refuse as it does."""
        persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
        if document_id is None and persisted is None:
            if self.only and query is not None:
                raise DocumentRefused(
                    "this server accepts trusted documents only: send the document's id "
                    '({"documentId": "sha256:<hash>"}) from the manifest it was deployed '
                    "with, not its text",
                    TRUSTED_DOCUMENTS_ONLY,
                )
            return query
        ids = set()
        if document_id is not None:
            ids.add(_document_id(document_id))
        if persisted is not None:
            ids.add(_apollo_hash(persisted))
        if len(ids) > 1:
            raise DocumentRefused(
                "documentId and extensions.persistedQuery.sha256Hash name different documents",
                DOCUMENT_ID_MISMATCH,
            )
        (wanted,) = ids
        if query == "":
            query = None  # some clients send an empty query beside the id
        if query is not None:
            if not isinstance(query, str):
                return query  # Strawberry says what is wrong with it
            actual = sha256(query)
            if actual != wanted:
                raise DocumentRefused(
                    f"the query sent does not match its document id: its sha256 is "
                    f"{actual}, not {wanted}; send the id alone, or the query it was made from",
                    DOCUMENT_ID_MISMATCH,
                )
        trusted = self.by_id.get(wanted)
        if trusted is not None:
            return trusted.text
        if query is not None:
            # Apollo's second try (the query with its hash): run it, as any free query,
            # where free queries are allowed; it is not registered.
            if self.only:
                raise DocumentRefused(
                    f"this server accepts trusted documents only, and {wanted} is not one of "
                    "them: documents are trusted at deployment (the manifest), never at run time",
                    TRUSTED_DOCUMENTS_ONLY,
                )
            return query
        if persisted is not None:
            message, code = (
                PERSISTED_QUERY_NOT_FOUND if self.configured else PERSISTED_QUERY_NOT_SUPPORTED
            )
            raise DocumentRefused(message, code)
        if not self.configured:
            raise DocumentRefused(
                f"unknown document id {_PREFIX}{wanted}: this server has no trusted documents",
                UNKNOWN_DOCUMENT_ID,
            )
        raise DocumentRefused(
            f"unknown document id {_PREFIX}{wanted}: no trusted document has it (is the "
            "client newer than the manifest this server was deployed with?)",
            UNKNOWN_DOCUMENT_ID,
        )

    # -- the schema's fast path --------------------------------------------------------

    def prepare(
        self, context: ExecutionContext, trusted: TrustedDocument, limits: Limits
    ) -> PreExecutionError | None:
        """What Strawberry's parse, operation check and validation would do, for a
        document that was parsed, validated and measured at start-up: the operation
        type is still checked (no mutation over GET), and a cost that depends on the
        variables is measured with these."""
        context.graphql_document = trusted.document
        try:
            operation_type = context.operation_type
        except RuntimeError as exc:
            raise CannotGetOperationTypeError(context.operation_name) from exc
        if operation_type not in context.allowed_operations:
            raise InvalidOperationTypeError(operation_type)
        context.pre_execution_errors = []
        if trusted.cost_varies:
            error = DocumentLimits(limits).check(context)
            if error is not None:
                context.pre_execution_errors = [error]
                return PreExecutionError(data=None, errors=[error])
        return None


def _document_id(value: Any) -> str:
    if isinstance(value, str):
        digest = value.strip().lower().removeprefix(_PREFIX)
        if _SHA256.fullmatch(digest):
            return digest
    raise DocumentRefused(
        f"documentId is {_PREFIX}<the document's sha256, 64 hex digits>, not {value!r:.80}",
        INVALID_DOCUMENT_ID,
    )


def _apollo_hash(persisted: Any) -> str:
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise DocumentRefused(
            "extensions.persistedQuery must be {version: 1, sha256Hash: <64 hex digits>}",
            PERSISTED_QUERY_NOT_SUPPORTED[1],
        )
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
        raise DocumentRefused(
            "extensions.persistedQuery.sha256Hash is the document's sha256, 64 hex digits",
            INVALID_DOCUMENT_ID,
        )
    return digest.lower()


# -- loading ---------------------------------------------------------------------------


def _read(path: str) -> Mapping[str, Any]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise TrustedDocumentsError(
            f"{SETTING}: cannot read the manifest {path} ({exc.strerror or exc})"
        ) from None
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise TrustedDocumentsError(f"{SETTING}: the manifest {path} is not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise TrustedDocumentsError(
            f"{SETTING}: the manifest {path} must be a JSON object of sha256 hash → document "
            f"text (GraphQL Code Generator's persisted-documents.json), not a "
            f"{type(manifest).__name__}"
        )
    return manifest


def _extra_rules(limits: Limits) -> list[Any]:
    # The rules the schema adds to GraphQL's own (schema.py), so that a document valid
    # here is valid there: production refuses introspection.
    from schema.schema import PRODUCTION_RULES

    return list(PRODUCTION_RULES) if limits.production else []


def _prepare(
    path: str, key: str, text: Any, schema: Schema, limits: Limits, rules: tuple[Any, ...]
) -> TrustedDocument:
    def refuse(why: str) -> TrustedDocumentsError:
        return TrustedDocumentsError(f"{SETTING} ({path}): the entry {key!r} {why}")

    digest = key.strip().lower().removeprefix(_PREFIX)
    if not _SHA256.fullmatch(digest):
        hint = (
            ": that is a sha1 hash; set persistedDocuments: {hashAlgorithm: 'sha256'} in the "
            "client preset's config"
            if re.fullmatch(r"[0-9a-f]{40}", digest.removeprefix("sha1:"))
            else ""
        )
        raise refuse(f"is not a sha256 hash (64 hex digits){hint}")
    if not isinstance(text, str):
        raise refuse(f"must map to the document's text, a string, not a {type(text).__name__}")
    actual = sha256(text)
    if actual != digest:
        raise refuse(f"is not the sha256 of its document (that is {actual})")
    try:
        document = parse(text, max_tokens=limits.max_tokens)
    except GraphQLError as exc:
        raise refuse(f"does not parse: {exc.message}") from None
    errors = validate_document(schema._schema, document, rules)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise refuse(f"is not valid against the schema: {errors[0].message}{more}")
    cost_varies = _first_from_variable(document)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    for operation in operations:
        name = operation.name.value if operation.name else None
        context = ExecutionContext(
            query=text,
            schema=schema,
            allowed_operations=(),
            variables={},
            provided_operation_name=name,
            graphql_document=document,
        )
        error = DocumentLimits(limits).check(context)
        code = (error.extensions or {}).get("code") if error is not None else None
        # A cost that depends on the variables is judged per request, with them.
        if error is not None and not (code == "QUERY_TOO_COMPLEX" and cost_varies):
            named = f"its operation {name}" if name else "its operation"
            raise refuse(f"exceeds the document limits: {named}: {error.message}")
    return TrustedDocument(id=digest, text=text, document=document, cost_varies=cost_varies)


def _first_from_variable(document: DocumentNode) -> bool:
    """Whether any `first` argument takes a variable (DocumentLimits' cost reads those)."""
    found = False

    class Finder(Visitor):
        def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
            nonlocal found
            if node.name.value == "first" and not isinstance(
                node.value, IntValueNode | NullValueNode
            ):
                found = True

    visit(document, Finder())
    return found
