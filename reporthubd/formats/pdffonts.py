"""Unicode text for the PDF writer: shipped TrueType fonts, per-character fallback, wrapping.

Each character is drawn with the first font that has a glyph for it: DejaVu Sans (Latin,
Greek, Cyrillic, Arabic and its digits, Hebrew, symbols), WenQuanYi Micro Hei (Chinese,
Japanese, Korean), Symbola (emoji, as monochrome outlines). A character none of them has is drawn
as a visible `[U+XXXX]` placeholder, never as an empty box. Control characters become spaces.
See fonts/README.md for the files and their licences.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from reportlab import rl_config
from reportlab.pdfbase import pdfmetrics, ttfonts
from reportlab.pdfbase.ttfonts import TTFont

FONT_DIR: Final = Path(__file__).parent / "fonts"
REGULAR: Final = "RH-DejaVuSans"
BOLD: Final = "RH-DejaVuSans-Bold"
CJK: Final = "RH-WenQuanYiMicroHei"
EMOJI: Final = "RH-Symbola"

_FILES: Final = {
    REGULAR: ("DejaVuSans.ttf", 0),
    BOLD: ("DejaVuSans-Bold.ttf", 0),
    CJK: ("wqy-microhei.ttc", 0),
    EMOJI: ("Symbola.ttf", 0),
}
_lock = threading.Lock()
_registered: dict[str, TTFont] = {}

Run = tuple[str, str]
"""(font name, text) — a stretch of text drawn with one font."""


def _to_unicode_cmap(fontname: str, subset: list[int]) -> str:
    """reportlab's ToUnicode CMap, with code points beyond the BMP (emoji, rare CJK) written as
    UTF-16 surrogate pairs as the PDF reference requires; reportlab writes them as bare code
    points, which text extractors (pypdf, poppler) cannot read."""
    head = [
        "/CIDInit /ProcSet findresource begin",
        "12 dict begin",
        "begincmap",
        "/CIDSystemInfo",
        f"<< /Registry ({fontname})",
        f"/Ordering ({fontname})",
        "/Supplement 0",
        ">> def",
        f"/CMapName /{fontname} def",
        "/CMapType 2 def",
        "1 begincodespacerange",
        f"<00> <{len(subset) - 1:02X}>",
        "endcodespacerange",
        f"{len(subset)} beginbfchar",
    ]
    body = [f"<{i:02X}> <{chr(v).encode('utf-16-be').hex().upper()}>" for i, v in enumerate(subset)]
    tail = ["endbfchar", "endcmap", "CMapName currentdict /CMap defineresource pop", "end", "end"]
    return "\n".join(head + body + tail)


# A fix of a plain bug with no other effect on output, applied once, process-wide.
ttfonts.makeToUnicodeCMap = _to_unicode_cmap


def font(name: str) -> TTFont:
    """The registered TrueType font `name` (registered on first use)."""
    return _font(name)


def _font(name: str) -> TTFont:
    font = _registered.get(name)
    if font is not None:
        return font
    with _lock:
        font = _registered.get(name)
        if font is None:
            file_name, index = _FILES[name]
            font = TTFont(name, str(FONT_DIR / file_name), subfontIndex=index)
            pdfmetrics.registerFont(font)
            _registered[name] = font
    return font


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")


@dataclass
class FontFamily:
    """One base font (regular or bold) with the fallbacks behind it, and a per-character cache."""

    base: str
    size: float

    def __post_init__(self) -> None:
        self._fallbacks = (self.base, CJK, EMOJI)
        self._base_font = _font(self.base)
        self._base_cmap = self._base_font.face.charToGlyph
        self._choice: dict[str, str | None] = {}
        self._wide_width: dict[str, float] = {}
        self._ascii_width: list[float] = [
            float(self._base_font.stringWidth(chr(i), self.size)) for i in range(128)
        ]
        # reportlab gives an ASCII-readable TrueType font's first subset the codes 32 to 127
        # as themselves (TTFont.State), so printable ASCII text is its own subset string and
        # needs no splitString: pdf.py draws it directly.
        readable = self._base_font._asciiReadable
        if readable is None:
            readable = rl_config.ttfAsciiReadable
        self.ascii_direct = bool(readable) and all(n in self._base_cmap for n in range(32, 127))

    def _font_for(self, ch: str) -> str | None:
        """The font that draws `ch`, '' for a control character, None for none."""
        if ch in self._choice:
            return self._choice[ch]
        choice: str | None = None
        if _is_control(ch):
            choice = ""
        else:
            for name in self._fallbacks:
                if ord(ch) in _font(name).face.charToGlyph:
                    choice = name
                    break
        self._choice[ch] = choice
        return choice

    def runs(self, text: str) -> list[Run]:
        """Split `text` into runs of one font each (placeholders for unknown characters)."""
        if text.isascii():
            if text.isprintable():
                return [(self.base, text)]
            return [(self.base, "".join(ch if ch.isprintable() else " " for ch in text))]
        runs: list[Run] = []
        font: str | None = None
        buf: list[str] = []
        for ch in text:
            choice = self._font_for(ch)
            if choice == "":
                choice, ch = self.base, " "
            elif choice is None:
                choice, ch = self.base, f"[U+{ord(ch):04X}]"
            if choice != font and buf:
                runs.append((font or self.base, "".join(buf)))
                buf = []
            font = choice
            buf.append(ch)
        if buf:
            runs.append((font or self.base, "".join(buf)))
        return runs

    def width(self, text: str) -> float:
        if text.isascii():
            return sum(map(self._ascii_width.__getitem__, text.encode("ascii")))
        # Per character, cached: a TrueType string's width is the sum of its glyphs' (no
        # kerning), and formatted numbers (`1.234,56 €`, a no-break space) are rarely ASCII.
        known = self._wide_width
        total = 0.0
        for ch in text:
            w = known.get(ch)
            if w is None:
                w = known[ch] = float(
                    sum(_font(f).stringWidth(t, self.size) for f, t in self.runs(ch))
                )
            total += w
        return total

    def wrap(self, text: str, width: float, max_lines: int) -> list[str]:
        """Lines of at most `width` points, breaking at spaces (or anywhere in long words and in
        scripts without spaces); past `max_lines` the last line ends with an ellipsis."""
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" not in text and self.width(text) <= width:
            return [text]
        lines: list[str] = []
        for paragraph in text.split("\n"):
            self._wrap_paragraph(paragraph, width, lines, max_lines + 1)
            if len(lines) > max_lines:
                break
        if len(lines) > max_lines:
            lines = lines[:max_lines]
            lines[-1] = self._ellipsize(lines[-1], width)
        return lines or [""]

    def _wrap_paragraph(self, text: str, width: float, lines: list[str], limit: int) -> None:
        line = ""
        for word in _words(text):
            candidate = line + word
            if self.width(candidate) <= width:
                line = candidate
                continue
            if line.strip():
                lines.append(line.rstrip())
                if len(lines) >= limit:
                    return
                word = word.lstrip()
            line = ""
            while self.width(word) > width and len(word) > 1:
                cut = self._fit(word, width)
                lines.append(word[:cut])
                if len(lines) >= limit:
                    return
                word = word[cut:]
            line = word
        lines.append(line.rstrip())

    def _fit(self, word: str, width: float) -> int:
        """How many leading characters of `word` fit in `width` (at least one)."""
        lo, hi = 1, len(word)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.width(word[:mid]) <= width:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _ellipsize(self, line: str, width: float) -> str:
        ellipsis = "…"
        while line and self.width(line + ellipsis) > width:
            line = line[:-1]
        return line + ellipsis


def _words(text: str) -> list[str]:
    """Words with their leading space; each CJK character is a word of its own."""
    words: list[str] = []
    current = ""
    for ch in text:
        if ch == " ":
            if current and not current.isspace():
                words.append(current)
                current = ""
            current += ch
        elif unicodedata.east_asian_width(ch) in "WF":
            if current:
                words.append(current)
            words.append(ch)
            current = ""
        else:
            current += ch
    if current:
        words.append(current)
    return words


_RTL: Final = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")


def has_rtl(text: str) -> bool:
    """Whether `text` holds Hebrew or Arabic letters (U+0590 to U+08FF, presentation forms)."""
    return _RTL.search(text) is not None


def visual(line: str) -> str:
    """One line of text as it is drawn left to right: Arabic letters joined into their
    contextual forms (arabic-reshaper), then the Unicode bidirectional algorithm's visual order
    (python-bidi, the Rust unicode-bidi crate). reportlab's canvas draws glyphs in the order it
    is given and shapes nothing, so both happen here, per wrapped line (bidi runs per line).
    Text without right-to-left letters is returned as it is."""
    if not has_rtl(line):
        return line
    import arabic_reshaper
    from bidi import get_display

    return str(get_display(arabic_reshaper.reshape(line)))
