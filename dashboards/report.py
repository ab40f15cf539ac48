"""Render the weekly scorecard: a PDF with one page per officer (fpdf2) and a CSV.

The PDF embeds DejaVu Sans (shipped inside matplotlib, so no system font is
needed) because the core PDF fonts cannot show Vietnamese diacritics.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt
from fpdf import FPDF

from .scorecard import CLASS_LABELS, CLASSES, CentreWeek, IsoWeek, OfficerWeek, weekly_scorecard
from .settings import DashboardSettings

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
CSV_COLUMNS = ("week", "centre", "officer", "very_satisfied", "satisfied", "not_satisfied", "rated", "served",
               "ratio", "response_rate", "rank", "top_reasons")


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f} %".replace(".", ",")


def write_csv(card: CentreWeek, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for o in card.officers:
            w.writerow([str(card.week), card.centre, o.officer, *(o.counts[c] for c in CLASSES), o.rated, o.served,
                        "" if o.ratio is None else f"{o.ratio:.6f}",
                        "" if o.response_rate is None else f"{o.response_rate:.6f}",
                        "" if o.rank is None else o.rank,
                        ";".join(f"{code}:{n}" for code, n in o.reasons.most_common(3))])


def trend_png(o: OfficerWeek, centre_ratio: float | None) -> bytes:
    labels = [w[-3:] for w, _, _ in o.trend]
    points = [(i, r * 100) for i, (_, r, _) in enumerate(o.trend) if r is not None]  # weeks without ratings: gap
    fig, ax = plt.subplots(figsize=(7.0, 2.6), dpi=110)
    ax.plot([x for x, _ in points], [y for _, y in points], marker="o", color="#1f6f43",
            label="Tỷ lệ hài lòng của cán bộ")
    if centre_ratio is not None:
        ax.axhline(centre_ratio * 100, color="#999999", linestyle="--", label="Trung tâm (tuần này)")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.set_title("Xu hướng theo tuần")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


class ScorecardPdf(FPDF):
    def __init__(self) -> None:
        super().__init__(format="A4")
        self.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.set_auto_page_break(auto=True, margin=15)

    def row(self, label: str, value: str, bold: bool = False) -> None:
        self.set_font("DejaVu", "B" if bold else "", 11)
        self.cell(95, 7, label, border=1)
        self.cell(60, 7, value, border=1, new_x="LMARGIN", new_y="NEXT")


def officer_page(pdf: ScorecardPdf, card: CentreWeek, o: OfficerWeek, reasons: dict[str, str]) -> None:
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 15)
    pdf.cell(0, 9, f"Phiếu điểm hài lòng tuần {card.week}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 11)
    pdf.cell(0, 7, f"Trung tâm: {card.centre} · Cán bộ: {o.officer}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for cls in CLASSES:
        pdf.row(CLASS_LABELS[cls], str(o.counts[cls]))
    pdf.row("Số vé được đánh giá (n)", str(o.rated), bold=True)
    pdf.row("Số vé đã phục vụ", str(o.served))
    pdf.row("Tỷ lệ hài lòng", pct(o.ratio), bold=True)
    pdf.row("Tỷ lệ phản hồi", pct(o.response_rate))
    pdf.row("Tỷ lệ hài lòng của trung tâm", pct(card.centre_ratio))
    rank = (f"{o.rank} / {sum(1 for p in card.officers if p.rank is not None)}" if o.rank is not None
            else f"Chưa xếp hạng (n < {card.min_sample})")
    pdf.row("Xếp hạng trong trung tâm", rank, bold=True)
    pdf.ln(4)
    pdf.set_font("DejaVu", "B", 12)
    pdf.cell(0, 7, "Lý do chưa hài lòng thường gặp", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 11)
    top = o.reasons.most_common(3)
    for code, n in top:
        pdf.cell(0, 6, f"• {reasons.get(code, code)}: {n}", new_x="LMARGIN", new_y="NEXT")
    if not top:
        pdf.cell(0, 6, "Không có", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.image(io.BytesIO(trend_png(o, card.centre_ratio)), w=180)
    pdf.set_font("DejaVu", "", 8)
    pdf.multi_cell(0, 4, "Tỷ lệ hài lòng = (số vé được đánh giá − số vé Không hài lòng) / số vé được đánh giá. "
                         "Đánh giá không có vé (vãng lai) không tính cho cán bộ. "
                         f"Chỉ xếp hạng khi n ≥ {card.min_sample}.")


def render_pdf(card: CentreWeek, path: Path, reasons: dict[str, str]) -> None:
    pdf = ScorecardPdf()
    pdf.set_title(f"Phiếu điểm {card.centre} {card.week}")
    for o in card.officers:
        officer_page(pdf, card, o, reasons)
    if not card.officers:
        pdf.add_page()
        pdf.set_font("DejaVu", "", 12)
        pdf.cell(0, 8, f"Không có dữ liệu cho trung tâm {card.centre} tuần {card.week}.")
    pdf.output(str(path))


def write_weekly(s: DashboardSettings, centre: str, week: IsoWeek, out_dir: Path,
                 weeks_back: int = 8) -> tuple[Path, Path]:
    card = weekly_scorecard(s.influx.query_client(), centre, week, s.timezone, s.min_sample, weeks_back)
    out_dir.mkdir(parents=True, exist_ok=True)
    pdf_path = out_dir / f"scorecard-{centre}-{week}.pdf"
    csv_path = out_dir / f"scorecard-{centre}-{week}.csv"
    render_pdf(card, pdf_path, s.reasons)
    write_csv(card, csv_path)
    return pdf_path, csv_path
