"""The French and Arabic catalogues (SPEC "Readers"): every message id of the sources is in
both, translated, not fuzzy, with the same placeholders and markup; the compiled catalogues are
the ones the .po files say."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "service" / "translations"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
TAG = re.compile(r"</?[a-z]+\b[^>]*>")  # the whole tag: a translation may not change an href


def catalogue(lang):
    with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=lang)


@pytest.fixture(scope="module")
def source_ids(tmp_path_factory):
    """What `make messages` extracts from the code and templates now."""
    out = tmp_path_factory.mktemp("pot") / "messages.pot"
    subprocess.run([str(Path(sys.executable).parent / "pybabel"), "extract", "-F", "babel.cfg", "-k", "_l",
                    "-k", "lazy_gettext", "-k", "N_", "-o", str(out), "."], cwd=ROOT, check=True, capture_output=True)
    with open(out, "rb") as fh:
        return {m.id for m in read_po(fh) if m.id}


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_every_message_of_the_sources_is_in_the_catalogue(lang, source_ids):
    ids = {m.id for m in catalogue(lang) if m.id}
    missing = source_ids - ids
    stale = ids - source_ids
    assert not missing, f"{len(missing)} message(s) not in {lang}: run `make messages` and translate: {sorted(missing)[:5]}"
    assert not stale, f"{len(stale)} message(s) in {lang} that no source uses: run `make messages`: {sorted(stale)[:5]}"


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_every_message_is_translated_not_fuzzy_with_its_placeholders_and_tags(lang):
    problems = []
    for m in catalogue(lang):
        if not m.id:
            continue
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        if m.fuzzy:
            problems.append(("fuzzy", ids[0]))
        wanted = set().union(*(PLACEHOLDER.findall(i) for i in ids))
        for s in strings:
            if not s or not s.strip():
                problems.append(("untranslated", ids[0]))
                continue
            # A plural form may say its number in words ("مقعدان"): only `num` may be left out.
            if set(PLACEHOLDER.findall(s)) - {"num"} != wanted - {"num"}:
                problems.append(("placeholders", ids[0]))
            if sorted(TAG.findall(s)) != sorted(TAG.findall(ids[0])):
                problems.append(("markup", ids[0]))
            words = PLACEHOLDER.sub("", s)
            if s == ids[0] and re.search(r"[A-Za-z]+ [A-Za-z]+", words) and not _same_in_both(s):
                problems.append(("still English", ids[0]))
    assert not problems, problems[:10]


def _same_in_both(text: str) -> bool:
    """Names that every language writes alike (DAWNS Digest, Stripe)."""
    return re.fullmatch(r"[\s\W]*(DAWNS|DAWNS Digest|Stripe|Email|Organisation|Mailchimp)[\s\W]*", text) is not None


def test_arabic_plural_forms_follow_cldr():
    cat = catalogue("ar")
    assert cat.num_plurals == 6
    plurals = [m for m in cat if isinstance(m.id, tuple)]
    assert plurals, "the Arabic catalogue has its plural messages"
    assert all(len(m.string) == 6 for m in plurals)


@pytest.mark.parametrize("lang", ["fr", "ar"])
def test_the_compiled_catalogue_is_the_po_file(lang):
    """`make` compiles service/translations/*/LC_MESSAGES/messages.po; a stale .mo would serve
    old texts."""
    mo = TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo"
    assert mo.exists(), f"{mo} is missing: run `make translations`"
    with open(mo, "rb") as fh:
        compiled = {_key(m.id): _key(m.string) for m in read_mo(fh) if m.id}
    source = {_key(m.id): _key(m.string) for m in catalogue(lang) if m.id and not m.fuzzy}
    assert compiled == source, f"{mo} is older than its .po: run `make translations`"


def _key(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value
