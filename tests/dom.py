"""A small DOM of an HTML page for tests (standard library only): elements with their tag,
attributes, children and text, and ``find``/``find_all`` by tag, class and attributes. Tag
balance errors are collected in ``Dom.errors``, so a test can assert the page is well formed.
The real-browser checks are in tests/browser.py; this one runs everywhere."""

from __future__ import annotations

from html.parser import HTMLParser

VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
     "track", "wbr"}
)  # fmt: skip


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Element | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element | str] = []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def get(self, key: str, default=None):
        return self.attrs.get(key, default)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for c in self.children:
            if isinstance(c, Element):
                yield c
                yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs) -> list[Element]:
        """Descendants with ``tag``, class ``cls`` and every attribute of ``attrs`` (``True``:
        present; a string: equal). Attribute names use ``_`` for ``-`` (``data_task``)."""
        out = []
        for e in self.iter():
            if tag is not None and e.tag != tag:
                continue
            if cls is not None and cls not in e.classes:
                continue
            ok = True
            for k, v in attrs.items():
                name = k.replace("_", "-")
                ok = ok and (name in e.attrs if v is True else e.attrs.get(name) == v)
            if ok:
                out.append(e)
        return out

    def find(self, *args, **kw) -> Element | None:
        found = self.find_all(*args, **kw)
        return found[0] if found else None

    def ancestors(self):
        p = self.parent
        while p is not None:
            yield p
            p = p.parent


class Dom(HTMLParser):
    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self.cur = self.root
        self.errors: list[str] = []
        self.feed(html)
        self.close()
        if self.cur is not self.root:
            self.errors.append(f"unclosed <{self.cur.tag}>")

    def handle_starttag(self, tag, attrs):
        e = Element(tag, dict(attrs), self.cur)
        self.cur.children.append(e)
        if tag not in VOID:
            self.cur = e

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Element(tag, dict(attrs), self.cur))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if self.cur.tag != tag:
            self.errors.append(f"</{tag}> closes <{self.cur.tag}>")
            # Recover: close up to the matching open element, if any.
            for a in [self.cur, *self.cur.ancestors()]:
                if a.tag == tag:
                    self.cur = a.parent
                    return
            return
        self.cur = self.cur.parent

    def handle_data(self, data):
        self.cur.children.append(data)

    # The document's queries.
    def find_all(self, *args, **kw):
        return self.root.find_all(*args, **kw)

    def find(self, *args, **kw):
        return self.root.find(*args, **kw)

    def ids(self) -> set[str]:
        return {e.attrs["id"] for e in self.root.iter() if e.attrs.get("id")}


def table_rows(table: Element) -> tuple[list[str], list[list[Element]]]:
    """The last header row's texts and the body rows' cells of a ``<table>``."""
    thead = table.find("thead")
    head = thead.find_all("tr")[-1] if thead else None
    headers = [c.text() for c in head.children if isinstance(c, Element)] if head else []
    body = table.find("tbody")
    rows = []
    for tr in body.find_all("tr") if body else []:
        rows.append([c for c in tr.children if isinstance(c, Element) and c.tag in ("td", "th")])
    return headers, rows
