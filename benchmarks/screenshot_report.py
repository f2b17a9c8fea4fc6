"""Screenshot every page of a Snakemake HTML report in headless Chromium.

The report is a single-file React app: a menu (Workflow, Statistics, one entry per
category), each category's subcategories, and each subcategory's results, shown as an image
or an HTML page next to the menu. This script opens the report, checks that the app
rendered, then visits the workflow page, the statistics, and every result of every
category, saving one PNG per page. Categories and subcategories are opened by clicking the
menu; a result is shown through the app's own ``setView``, as its eye button does, with
its caption in the menu (what the result's info button shows).

Usage (needs ``pip install playwright`` and a Chromium, e.g. Debian's ``apt install
chromium``; no browser download)::

    python benchmarks/screenshot_report.py report.html docs/report
    python benchmarks/screenshot_report.py report.html docs/report --chromium /usr/bin/chromium

Prints one line per screenshot (path, what it shows) and exits non-zero when the report
does not render or a page shows a JavaScript error.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the report.html to screenshot")
    parser.add_argument("out", type=Path, help="folder for the PNG files")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--width", type=int, default=1800)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--full-colour", action="store_true", help="keep 24-bit colour")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    shots = 0

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(args.report.resolve().as_uri())
        page.wait_for_function("typeof app !== 'undefined' && app !== null")
        categories = page.evaluate("categories")
        results = page.evaluate(
            "Object.fromEntries(Object.entries(results).map(([k, v]) => "
            "[k, {mime: v.mime_type, labels: v.labels, uri: v.data_uri}]))"
        )

        def shot(name: str, what: str) -> None:
            nonlocal shots
            page.wait_for_timeout(600)  # React re-render, iframe and image decoding
            path = args.out / f"{shots:02d}-{name}.png"
            page.screenshot(path=path)
            if not args.full_colour:  # a 256-colour palette: about a third of the bytes
                Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
            print(f"{path}: {what}")
            shots += 1

        page.get_by_text("Workflow", exact=True).first.click()
        shot("workflow", "workflow description and rule graph")
        page.get_by_text("Statistics", exact=True).first.click()
        shot("statistics", "runtime statistics of every rule")
        for category in sorted(categories):
            for sub in sorted(categories[category]):
                page.evaluate("app.setView({navbarMode: 'menu'})")  # back to the main menu
                page.get_by_text(category, exact=True).first.click()  # its subcategories
                page.get_by_text(sub, exact=True).first.click()  # its results
                for path in categories[category][sub]:
                    r = results[path]
                    kind = "img" if r["mime"].startswith("image/") else "html"
                    page.evaluate(
                        "([k, uri, p]) => app.setView({content: k, contentPath: uri, "
                        "resultPath: p})",
                        [kind, r["uri"], path],
                    )
                    page.evaluate("(p) => app.showResultInfo(p)", path)  # caption in menu
                    name = f"{slug(category)}-{slug(sub)}-{slug(Path(path).stem)}"
                    shot(name, f"{category} / {sub} / {path}")
        browser.close()
    if errors:
        print("JavaScript errors:", *errors, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
