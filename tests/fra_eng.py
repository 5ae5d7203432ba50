"""A small stand-in for the book's ``fra-eng.zip`` (which cannot be fetched here), and a
loopback server for it.

``fra-eng/fra.txt`` holds about 300 made-up ``English<TAB>French`` pairs in the real file's
style (shortest first, a narrow no-break space before ``!`` and ``?``), among them the four
sentences the seq2seq chapter translates. :func:`serve_fra_eng` writes the archive, serves it
from 127.0.0.1 and names it in a ``DL_DATA_HUB`` file, so ``download_extract('fra-eng')``
fetches it as it would fetch the book's.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

NNBSP = "\u202f"  # the real file's space before ! and ?

_SUBJECTS = [  # English "to be", French "to be", "was", "to have"
    ("I'm", "je suis", "j'étais", "j'ai", "I"),
    ("You're", "tu es", "tu étais", "tu as", "You"),
    ("He's", "il est", "il était", "il a", "He"),
    ("She's", "elle est", "elle était", "elle a", "She"),
    ("We're", "nous sommes", "nous étions", "nous avons", "We"),
    ("They're", "ils sont", "ils étaient", "ils ont", "They"),
]
_HOMES = ["chez moi", "chez toi", "chez lui", "chez elle", "chez nous", "chez eux"]
_ADJECTIVES = [
    ("calm", "calme"),
    ("sad", "triste"),
    ("sick", "malade"),
    ("rich", "riche"),
    ("young", "jeune"),
    ("free", "libre"),
    ("shy", "timide"),
    ("wise", "sage"),
]
_PAST = [
    ("lost", "perdu"),
    ("won", "gagné"),
    ("ate", "mangé"),
    ("slept", "dormi"),
    ("paid", "payé"),
    ("tried", "essayé"),
    ("cried", "pleuré"),
    ("laughed", "ri"),
]
_SHORT = [
    ("Go.", f"Va{NNBSP}!"),
    ("Hi.", f"Salut{NNBSP}!"),
    ("Run!", f"Cours{NNBSP}!"),
    ("Run!", f"Courez{NNBSP}!"),
    ("Who?", f"Qui{NNBSP}?"),
    ("Stop!", f"Arrête{NNBSP}!"),
    ("Wait!", f"Attends{NNBSP}!"),
    ("Go on.", f"Va{NNBSP}!"),
    ("Come.", f"Viens{NNBSP}!"),
    ("Help!", f"À l'aide{NNBSP}!"),
    ("Go now.", f"Va maintenant{NNBSP}!"),
]


def _pairs() -> list[tuple[str, str]]:
    pairs = list(_SHORT)
    for (be, fr_be, fr_was, fr_have, pronoun), home in zip(_SUBJECTS, _HOMES):
        fr = fr_be[0].upper() + fr_be[1:]
        pairs.append((f"{be} home.", f"{fr} {home}."))
        pairs.append((f"{pronoun} was home.", f"{fr_was.capitalize()} {home}."))
        for english, french in _ADJECTIVES:
            pairs.append((f"{be} {english}.", f"{fr} {french}."))
            pairs.append((f"{be} very {english}.", f"{fr} très {french}."))
            pairs.append((f"{pronoun} was {english}.", f"{fr_was.capitalize()} {french}."))
            pairs.append((f"{be} not {english}.", f"{_negate(fr_be)} pas {french}."))
        for english, french in _PAST:
            pairs.append((f"{pronoun} {english}.", f"{fr_have.capitalize()} {french}."))
    return sorted(pairs, key=lambda pair: len(pair[0]))  # stable: Go. stays first


def _negate(fr_be: str) -> str:
    """'je suis' -> 'Je ne suis'."""
    subject, verb = fr_be.split(" ")
    return f"{subject.capitalize()} ne {verb}"


PAIRS = _pairs()
FRA_TXT = "".join(f"{english}\t{french}\n" for english, french in PAIRS)


def zip_bytes() -> bytes:
    """``fra-eng.zip``: ``fra-eng/fra.txt`` and the ``_about.txt`` the real archive has."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("fra-eng/_about.txt", "Made-up sentence pairs for tests.\n")
        archive.writestr("fra-eng/fra.txt", FRA_TXT)
    return buffer.getvalue()


@contextlib.contextmanager
def serve_fra_eng(folder):
    """Serve ``fra-eng.zip`` from ``folder/www`` on 127.0.0.1; yields the path of a
    ``DL_DATA_HUB`` file that points ``fra-eng`` at it (URL and sha1)."""
    www = folder / "www"
    www.mkdir(parents=True, exist_ok=True)
    body = zip_bytes()
    (www / "fra-eng.zip").write_bytes(body)
    handler = functools.partial(_QuietHandler, directory=str(www))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    mirror = folder / "hub.json"
    url = f"http://127.0.0.1:{server.server_address[1]}/fra-eng.zip"
    mirror.write_text(json.dumps({"fra-eng": [url, hashlib.sha1(body).hexdigest()]}))
    try:
        yield mirror
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
