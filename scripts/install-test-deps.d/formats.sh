#!/usr/bin/env bash
# poppler-utils (pdftoppm, pdftotext): the PDF tests render a page to an image to check that
# CJK, Cyrillic and emoji text is drawn (tests/formats/test_pdf.py). LibreOffice
# (libreoffice-calc-nogui, about 15 s to install here): tests/formats/test_excel.py has it open the
# .xlsx files as a second, independent reader.
set -euo pipefail
need=()
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
command -v soffice >/dev/null 2>&1 || need+=(libreoffice-calc-nogui)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: missing Debian packages ${need[*]} (run as root or install them)" >&2
    exit 0
  fi
  echo "install-test-deps: apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
