#!/usr/bin/env python3
"""A stand-in for the Meilisearch server, for tests (no Meilisearch package can be installed
here). It answers the endpoints Sori's Meilisearch backend uses with Meilisearch's JSON shapes,
status codes and error bodies:

  POST   /indexes                          create an index (task)
  PATCH  /indexes/{uid}/settings           update settings (task)
  GET    /indexes/{uid}/settings           the settings
  POST   /indexes/{uid}/documents          add or replace documents (task)
  POST   /indexes/{uid}/documents/delete-batch   delete documents by id (task)
  DELETE /indexes/{uid}/documents          delete every document (task)
  POST   /indexes/{uid}/search             search
  GET    /tasks/{uid}                      a task's status

Tasks are processed in order by a worker thread, a little after they were enqueued, and the
data is written to disk after each one, so the process can be killed and started again like
the real server. Filters use Meilisearch's syntax (=, !=, <, <=, >, >=, IN, NOT IN, AND, OR,
NOT, parentheses, quoted strings) and are refused on attributes that are not filterable, as
Meilisearch does. Text matching approximates Meilisearch's: every query word must occur in a
searchable attribute (`matchingStrategy: all`), Latin words as word prefixes, Hangul inside
words (Meilisearch segments Korean with a dictionary, so particles come apart from the word).

Usage: meilisearch_standin.py --port PORT --data FILE [--key MASTER_KEY]
"""

import argparse
import json
import os
import re
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

LOCK = threading.Condition()
STATE = {"indexes": {}, "tasks": [], "next_uid": 0}
DATA = None
KEY = None


def now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error(code, message, kind="invalid_request"):
    return {"message": message, "code": code, "type": kind,
            "link": "https://docs.meilisearch.com/errors#" + code}


def save():
    tmp = DATA + ".tmp"
    with open(tmp, "w") as f:
        json.dump(STATE, f)
    os.replace(tmp, DATA)


def enqueue(index_uid, kind, payload):
    with LOCK:
        uid = STATE["next_uid"]
        STATE["next_uid"] += 1
        task = {"uid": uid, "batchUid": uid, "indexUid": index_uid, "status": "enqueued",
                "type": kind, "canceledBy": None, "details": None, "error": None,
                "duration": None, "enqueuedAt": now(), "startedAt": None, "finishedAt": None,
                "_payload": payload}
        STATE["tasks"].append(task)
        save()
        LOCK.notify_all()
    return {"taskUid": uid, "indexUid": index_uid, "status": "enqueued", "type": kind,
            "enqueuedAt": task["enqueuedAt"]}


def process(task):
    index_uid, kind, payload = task["indexUid"], task["type"], task["_payload"]
    indexes = STATE["indexes"]
    if kind == "indexCreation":
        if index_uid in indexes:
            return None, error("index_already_exists", f"Index `{index_uid}` already exists.")
        indexes[index_uid] = {"primaryKey": payload.get("primaryKey"), "documents": {},
                              "settings": default_settings()}
        return {"primaryKey": payload.get("primaryKey")}, None
    index = indexes.setdefault(index_uid, {"primaryKey": None, "documents": {},
                                           "settings": default_settings()})
    if kind == "settingsUpdate":
        index["settings"].update(payload)
        return payload, None
    if kind == "documentAdditionOrUpdate":
        key = payload["primaryKey"] or index["primaryKey"] or "id"
        index["primaryKey"] = index["primaryKey"] or key
        for document in payload["documents"]:
            doc_id = document.get(key)
            if not isinstance(doc_id, (str, int)) or not re.fullmatch(r"[A-Za-z0-9_-]{1,511}", str(doc_id)):
                return None, error("invalid_document_id", f"Document identifier `{doc_id}` is invalid.")
        for document in payload["documents"]:
            index["documents"][str(document[key])] = document
        n = len(payload["documents"])
        return {"receivedDocuments": n, "indexedDocuments": n}, None
    if kind == "documentDeletion":
        ids = payload.get("ids")
        if ids is None:
            deleted = len(index["documents"])
            index["documents"] = {}
            return {"providedIds": 0, "deletedDocuments": deleted, "originalFilter": None}, None
        deleted = sum(1 for i in ids if index["documents"].pop(str(i), None) is not None)
        return {"providedIds": len(ids), "deletedDocuments": deleted, "originalFilter": None}, None
    return None, error("internal", f"unknown task type {kind}", "internal")


def worker():
    while True:
        with LOCK:
            pending = [t for t in STATE["tasks"] if t["status"] == "enqueued"]
            if not pending:
                LOCK.wait()
                continue
            task = pending[0]
            task["status"] = "processing"
            task["startedAt"] = now()
        time.sleep(0.005)
        with LOCK:
            started = time.time()
            details, failure = process(task)
            task["details"] = details
            task["error"] = failure
            task["status"] = "failed" if failure else "succeeded"
            task["finishedAt"] = now()
            task["duration"] = "PT%.6fS" % (time.time() - started + 0.005)
            save()


def default_settings():
    return {"searchableAttributes": ["*"], "filterableAttributes": [], "sortableAttributes": [],
            "rankingRules": ["words", "typo", "proximity", "attribute", "sort", "exactness"]}


# --- filters -----------------------------------------------------------------------------

TOKEN = re.compile(r'\s*(?:(\()|(\))|(\[)|(\])|(,)|("(?:\\.|[^"\\])*")|(<=|>=|!=|=|<|>)|([^\s()\[\],"<>=!]+))')


class FilterError(Exception):
    pass


def tokenize(text):
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"unexpected character at {pos}")
        pos = m.end()
        for i, group in enumerate(m.groups()):
            if group is not None:
                if i == 5:
                    tokens.append(("str", re.sub(r"\\(.)", r"\1", group[1:-1])))
                elif i == 7:
                    tokens.append(("word", group))
                else:
                    tokens.append(("sym", group))
    return tokens


class Parser:
    def __init__(self, tokens, filterable):
        self.tokens, self.i, self.filterable = tokens, 0, filterable

    def peek(self, value=None):
        if self.i >= len(self.tokens):
            return None
        token = self.tokens[self.i]
        if value is None or (token[0] in ("sym", "word") and token[1].upper() == value):
            return token
        return None

    def take(self, value=None):
        token = self.peek(value)
        if token is None:
            raise FilterError(f"expected {value or 'more'} at token {self.i}")
        self.i += 1
        return token

    def parse(self):
        node = self.or_()
        if self.i != len(self.tokens):
            raise FilterError(f"unexpected token {self.tokens[self.i][1]}")
        return node

    def or_(self):
        nodes = [self.and_()]
        while self.peek("OR"):
            self.take()
            nodes.append(self.and_())
        return lambda d: any(n(d) for n in nodes)

    def and_(self):
        nodes = [self.not_()]
        while self.peek("AND"):
            self.take()
            nodes.append(self.not_())
        return lambda d: all(n(d) for n in nodes)

    def not_(self):
        if self.peek("NOT"):
            self.take()
            inner = self.not_()
            return lambda d: not inner(d)
        if self.peek("("):
            self.take()
            inner = self.or_()
            self.take(")")
            return inner
        return self.condition()

    def value(self):
        kind, text = self.take()
        if kind == "str":
            return text
        if kind != "word":
            raise FilterError(f"expected a value, got {text}")
        return text

    def condition(self):
        kind, attribute = self.take()
        if kind not in ("word", "str"):
            raise FilterError(f"expected an attribute, got {attribute}")
        if attribute not in self.filterable:
            raise FilterError(
                f"Attribute `{attribute}` is not filterable. Available filterable attributes "
                f"are: `{', '.join(sorted(self.filterable))}`.")
        negate = False
        if self.peek("NOT"):
            self.take()
            negate = True
        if self.peek("IN"):
            self.take()
            self.take("[")
            values = []
            while not self.peek("]"):
                values.append(self.value())
                if self.peek(","):
                    self.take()
            self.take("]")
            return lambda d: (matches(d.get(attribute), "=", values)) != negate
        if negate:
            raise FilterError("expected IN after NOT")
        op = self.take()[1]
        if op not in ("=", "!=", "<", "<=", ">", ">="):
            raise FilterError(f"unknown operator {op}")
        value = self.value()
        return lambda d: matches(d.get(attribute), op, [value])


def as_comparable(field, value):
    if isinstance(field, bool):
        return field, value.lower() == "true"
    if isinstance(field, (int, float)):
        try:
            return field, float(value)
        except ValueError:
            return None, None
    return str(field), value


def matches(field, op, values):
    if field is None:
        return False
    for value in values:
        a, b = as_comparable(field, value)
        if a is None:
            continue
        if ((op == "=" and a == b) or (op == "!=" and a != b) or (op == "<" and a < b)
                or (op == "<=" and a <= b) or (op == ">" and a > b) or (op == ">=" and a >= b)):
            return True
    return False


# --- text ---------------------------------------------------------------------------------

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def texts(document, attributes):
    for attribute in attributes:
        value = document.get(attribute)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, str):
                yield attribute, v


def word_found(word, text):
    text = text.lower()
    if HANGUL.search(word):
        return word in text
    return any(w.startswith(word) for w in re.findall(r"\w+", text))


def score(words, document, attributes):
    """A score in (0, 1] for a document every word matched: shorter texts score higher."""
    matched = [t for _, t in texts(document, attributes) if all(word_found(w, t) for w in words)]
    pool = matched or [t for _, t in texts(document, attributes)]
    length = min((len(t) for t in pool), default=1)
    return round(sum(len(w) for w in words) / max(length, 1), 6) if words else 1.0


def search(index, body):
    settings = index["settings"]
    filterable = set(settings["filterableAttributes"])
    searchable = settings["searchableAttributes"]
    on = body.get("attributesToSearchOn") or searchable
    if searchable != ["*"]:
        for attribute in on:
            if attribute not in searchable:
                return 400, error("invalid_search_attributes_to_search_on",
                                  f"Attribute `{attribute}` is not searchable.")
    predicate = lambda d: True
    if body.get("filter"):
        try:
            predicate = Parser(tokenize(body["filter"]), filterable).parse()
        except FilterError as e:
            return 400, error("invalid_search_filter", str(e))
    sort = body.get("sort") or []
    for rule in sort:
        attribute = rule.split(":")[0]
        if attribute not in settings["sortableAttributes"]:
            return 400, error("invalid_search_sort", f"Attribute `{attribute}` is not sortable.")
    words = [w.lower() for w in re.findall(r"\w+", body.get("q") or "")]
    hits = []
    for document in index["documents"].values():
        if not predicate(document):
            continue
        candidates = [t for _, t in texts(document, on if on != ["*"] else document.keys())]
        # matchingStrategy "all": every word somewhere in the searched attributes.
        if words and not all(any(word_found(w, t) for t in candidates) for w in words):
            continue
        hits.append((score(words, document, on), document))
    if sort:
        attribute, direction = sort[0].split(":")
        hits.sort(key=lambda h: h[1].get(attribute, 0), reverse=(direction == "desc"))
    else:
        # Ranking rules: the score, then custom rules such as count:desc.
        tie = [r for r in settings["rankingRules"] if ":" in r]
        def key(h):
            parts = [-h[0]]
            for rule in tie:
                attribute, direction = rule.split(":")
                v = h[1].get(attribute, 0)
                parts.append(-v if direction == "desc" else v)
            return parts
        hits.sort(key=key)
    offset, limit = int(body.get("offset", 0)), int(body.get("limit", 20))
    retrieve = body.get("attributesToRetrieve") or ["*"]
    page = []
    for s, document in hits[offset:offset + limit]:
        shown = dict(document) if retrieve == ["*"] else {k: document[k] for k in retrieve if k in document}
        if body.get("showRankingScore"):
            shown["_rankingScore"] = s
        page.append(shown)
    return 200, {"hits": page, "query": body.get("q") or "", "processingTimeMs": 0,
                 "limit": limit, "offset": offset, "estimatedTotalHits": len(hits)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def authorized(self):
        if KEY is None:
            return True
        header = self.headers.get("Authorization")
        if not header:
            self.answer(401, error("missing_authorization_header",
                                   "The Authorization header is missing.", "auth"))
            return False
        if header != f"Bearer {KEY}":
            self.answer(403, error("invalid_api_key", "The provided API key is invalid.", "auth"))
            return False
        return True

    def route(self, method):
        if not self.authorized():
            return
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p]
        try:
            body = self.body()
        except ValueError:
            return self.answer(400, error("malformed_payload", "The payload is not valid JSON."))
        if method == "POST" and parts == ["indexes"]:
            return self.answer(202, enqueue(body["uid"], "indexCreation", body))
        if method == "GET" and len(parts) == 2 and parts[0] == "tasks":
            with LOCK:
                found = [t for t in STATE["tasks"] if str(t["uid"]) == parts[1]]
            if not found:
                return self.answer(404, error("task_not_found", f"Task `{parts[1]}` not found."))
            return self.answer(200, {k: v for k, v in found[0].items() if not k.startswith("_")})
        if len(parts) >= 3 and parts[0] == "indexes":
            uid, rest = parts[1], parts[2:]
            if rest == ["settings"] and method == "PATCH":
                return self.answer(202, enqueue(uid, "settingsUpdate", body))
            if rest == ["documents"] and method == "POST":
                if not isinstance(body, list):
                    return self.answer(400, error("malformed_payload", "expected an array"))
                key = dict(p.split("=", 1) for p in url.query.split("&") if "=" in p).get("primaryKey")
                return self.answer(202, enqueue(uid, "documentAdditionOrUpdate",
                                                {"documents": body, "primaryKey": key}))
            if rest == ["documents", "delete-batch"] and method == "POST":
                return self.answer(202, enqueue(uid, "documentDeletion", {"ids": body}))
            if rest == ["documents"] and method == "DELETE":
                return self.answer(202, enqueue(uid, "documentDeletion", {}))
            with LOCK:
                index = STATE["indexes"].get(uid)
                if index is None:
                    return self.answer(404, error("index_not_found", f"Index `{uid}` not found."))
                if rest == ["settings"] and method == "GET":
                    return self.answer(200, index["settings"])
                if rest == ["search"] and method == "POST":
                    return self.answer(*search(index, body or {}))
        self.answer(404, error("not_found", "Not found."))

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")

    def do_DELETE(self):
        self.route("DELETE")


def main():
    global DATA, KEY, STATE
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--key")
    args = parser.parse_args()
    DATA, KEY = args.data, args.key
    if os.path.exists(DATA):
        with open(DATA) as f:
            STATE = json.load(f)
        # Like Meilisearch after a restart: tasks cut off while processing run again.
        for task in STATE["tasks"]:
            if task["status"] == "processing":
                task["status"] = "enqueued"
    threading.Thread(target=worker, daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
