"""The subject report (``sub-<label>.html``) built from the derivatives on disk.

References: the figure's own PNG text (labels drawn), ``dseg.tsv`` written by
``LabelTable``, the QC scores and thresholds written into the sidecar by the test, and
HTML parsed back with the standard library's parser.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from report_data import add_scan, segmentation_record

from synthseg_bids.reports.figures import display_colours, figure_labels
from synthseg_bids.reports.subject import GROUP_REPORT, write_subject_report


class _Page(HTMLParser):
    """Ids, links, images and the text of ``<li>`` legend entries of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.links, self.images, self.legend = set(), [], [], []
        self._legend_item = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a":
            self.links.append(attrs.get("href"))
        if tag == "img":
            self.images.append(attrs)
        if tag == "li" and "title" in attrs:
            self._legend_item = {"title": attrs["title"], "text": "", "colour": None}
        if tag == "span" and self._legend_item is not None and "swatch" in attrs.get("class", ""):
            self._legend_item["colour"] = attrs["style"].removeprefix("background:")

    def handle_data(self, data):
        if self._legend_item is not None:
            self._legend_item["text"] += data

    def handle_endtag(self, tag):
        if tag == "li" and self._legend_item is not None:
            self.legend.append(self._legend_item)
            self._legend_item = None


def test_report_sections_legend_qc_and_navigation(derivatives):
    scores = {"general white matter confidence": 0.714, "general grey matter confidence": 0.65,
              "general white matter flip dice": 0.9, "brainstem confidence": float("nan")}
    add_scan(derivatives, "sub-01_ses-1_T1w.nii.gz", scores=scores, flag=True,
             segmentation=segmentation_record(flip=False, postprocess="brain"))
    add_scan(derivatives, "sub-01_ses-2_T1w.nii.gz", seed=1)
    crash = derivatives / "logs" / "20260101-000000_abcd" / "sub-01_ses-3_T1w" / "crash-1.txt"
    crash.parent.mkdir(parents=True)
    crash.write_text("Traceback")
    versions = {"version": "9.9.9", "nipype": "1.10.0", "command": "synthseg-bids /d /o participant",
                "run_uuid": "20260102-000000_ef01"}
    page_text = write_subject_report(derivatives, "01", versions=versions,
                                     errors=["sub-01_ses-3_T1w.nii.gz: cannot read the header"]).read_text()
    page = _Page(page_text)
    # one section per scan, linked from the navigation; the failed scan in the errors, with its crash file
    assert {"sub-01_ses-1_T1w", "sub-01_ses-2_T1w", "failed-sub-01_ses-3_T1w", "methods", "summary"} <= page.ids
    assert {"#sub-01_ses-1_T1w", "#sub-01_ses-2_T1w", GROUP_REPORT} <= set(page.links)
    assert crash.relative_to(derivatives).as_posix() in page.links
    # summary: command, versions, runs of the scans and of this run
    assert "synthseg-bids /d /o participant" in page_text
    assert "20260101-000000_abcd" in page_text and "20260102-000000_ef01" in page_text
    # figures: each image exists; the legend lists the structures drawn, one style, in the drawn colours
    for image in page.images:
        assert (derivatives / image["src"]).is_file()
    drawn = figure_labels(derivatives / page.images[0]["src"])
    legend = {item["text"].strip(): item["colour"] for item in page.legend[: len(set(drawn)) // 2 + 4]}
    colours = display_colours()
    assert legend["Cerebral white matter (left, right)"] == "#{:02x}{:02x}{:02x}".format(*colours[2])
    assert legend["Lateral ventricle (left, right)"] == "#{:02x}{:02x}{:02x}".format(*colours[4])
    assert legend["CSF"] == "#{:02x}{:02x}{:02x}".format(*colours[24]) and "Brain stem" in legend
    assert not any("-" in name for name in legend)  # no FreeSurfer-style names beside plain ones
    # QC: score and threshold side by side, the failing one marked, the flag explained
    assert '<td class="pass">0.714 ≥ 0.70</td>' in page_text
    assert '<td class="fail">0.650 &lt; 0.70</td>' in page_text
    assert '<td class="pass">0.900 ≥ 0.80</td>' in page_text
    assert "n/a (not in the segmentation)" in page_text
    assert "QC: FLAGGED" in page_text and "general grey matter confidence" in page_text
    assert "its confidence is below 0.70 or its flip dice is below 0.80" in page_text
    # methods from what ran, per distinct record; no local paths
    assert "For sub-01_ses-1_T1w.nii.gz: " in page_text and "Test-time left/right flip augmentation was off." in page_text
    assert "only the largest connected component of the whole brain was kept" in page_text
    assert "JAX 0.7.2" in page_text and "TensorFlow" not in page_text and "trained for 1,234 steps" in page_text
    assert "/home/someone" not in page_text and "secret" not in page_text
    assert "33 in <code>dseg.tsv</code>, that is 32 brain structures" in page_text
    assert "Billot B" in page_text and "{{" not in page_text and "{%" not in page_text


def test_report_of_a_subject_without_scans_lists_its_errors(tmp_path):
    page = write_subject_report(tmp_path, "07", errors=["sub-07_T1w.nii.gz: broken header"]).read_text()
    assert "No segmentation found for this subject." in page and "broken header" in page
    assert Path(tmp_path / "sub-07.html").is_file()


def test_an_incomplete_table_is_listed_and_the_report_still_written(derivatives):
    add_scan(derivatives, "sub-01_ses-1_T1w.nii.gz", figures=False)
    broken = add_scan(derivatives, "sub-01_ses-2_T1w.nii.gz", figures=False)
    broken.write_text(broken.read_text().splitlines()[0] + "\n")  # header only: a killed run
    page = _Page(write_subject_report(derivatives, "01").read_text())
    assert "sub-01_ses-1_T1w" in page.ids and "sub-01_ses-2_T1w" not in page.ids and "errors" in page.ids
    text = (derivatives / "sub-01.html").read_text()
    assert ("<strong>sub-01/ses-2/anat/sub-01_ses-2_desc-synthsegT1w_volumes.tsv</strong>: incomplete volumes "
            "table, has 0 data rows instead of 1") in text
