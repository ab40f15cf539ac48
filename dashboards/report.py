"""Render the weekly scorecard: a PDF with one page per officer (fpdf2) and a CSV.

The PDF embeds DejaVu Sans (shipped inside matplotlib, so no system font is
needed) because the core PDF fonts cannot show Vietnamese diacritics.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt
from fpdf import FPDF

from .channels import delay_text
from .scorecard import CLASS_LABELS, CLASSES, CentreWeek, IsoWeek, OfficerWeek, weekly_scorecard
from .settings import DashboardSettings

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
CSV_COLUMNS = ("week", "week_start", "week_end", "centre", "centre_name", "officer", "officer_name",
               "very_satisfied", "satisfied", "not_satisfied", "rated", "served", "ratio", "response_rate", "rank",
               "reasons_not_satisfied", "reasons_satisfied",
               "rated_counter", "rated_web", "web_share", "response_rate_counter", "response_rate_web")
RULES = ("Tỷ lệ hài lòng = (số vé được đánh giá − số vé Không hài lòng) / số vé được đánh giá; "
         "\"Bình thường\" được tính là hài lòng. Tỷ lệ phản hồi = số vé được đánh giá / số vé đã phục vụ. "
         "Đánh giá không có vé (vãng lai) không tính cho cán bộ. Xếp hạng trong trung tâm, chỉ khi n ≥ {min_sample}; "
         "cùng tỷ lệ thì cùng hạng, hạng sau bỏ qua (1, 1, 3).")


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f} %".replace(".", ",")


def fraction(v: float | None) -> str:
    """A ratio in the CSV: six decimals for a spreadsheet, empty when there is nothing to divide by."""
    return "" if v is None else f"{v:.6f}"


# The officer page's channel rows: Vietnamese, then English for a bilingual reader
CHANNEL_ROWS = ("Số vé đánh giá tại quầy (counter)", "Số vé đánh giá qua web (web)",
                "Tỷ lệ đánh giá qua web (web share)", "Tỷ lệ phản hồi tại quầy (counter)",
                "Tỷ lệ phản hồi qua web (web)")
CHANNEL_RULE = ("Tại quầy: trên màn hình cảm ứng hoặc bằng nút bấm của máy đánh giá; qua web: bằng liên kết trên "
                "điện thoại (mã QR trên phiếu, SMS, Zalo, mã QR trên máy đánh giá). Mỗi vé chỉ được đánh giá một lần "
                "qua mọi kênh, nên số lượt tại quầy + qua web = số vé được đánh giá; tỷ lệ phản hồi của mỗi kênh = "
                "số vé đánh giá qua kênh đó / số vé đã phục vụ. (Counter = the terminal's touch screen or buttons; "
                "web = the link on the citizen's phone. A ticket is rated once across channels.)")


def write_csv(card: CentreWeek, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        first, last = card.week.dates()
        for o in card.officers:
            w.writerow([str(card.week), first.isoformat(), last.isoformat(), card.centre, card.centre_name, o.officer,
                        o.name, *(o.counts[c] for c in CLASSES), o.rated, o.served,
                        "" if o.ratio is None else f"{o.ratio:.6f}",
                        "" if o.response_rate is None else f"{o.response_rate:.6f}",
                        "" if o.rank is None else o.rank,
                        ";".join(f"{code}:{n}" for code, n in sorted(o.reasons.items())),
                        ";".join(f"{code}:{n}" for code, n in sorted(o.reasons_satisfied.items())),
                        o.counter, o.web, *(fraction(v) for v in (o.web_share, o.counter_response, o.web_response))])


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

    def cells(self, widths: tuple[int, ...], values: tuple[str, ...], bold: bool = False) -> None:
        self.set_font("DejaVu", "B" if bold else "", 10)
        for w, v in zip(widths, values, strict=True):
            self.cell(w, 7, v, border=1)
        self.ln(7)


def rank_text(card: CentreWeek, o: OfficerWeek) -> str:
    return f"{o.rank} / {card.ranked}" if o.rank is not None else f"Chưa xếp hạng (n < {card.min_sample})"


def summary_page(pdf: ScorecardPdf, card: CentreWeek) -> None:
    """Page 1: the centre's week at a glance, officers in rank order."""
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 15)
    pdf.cell(0, 9, f"Tổng hợp hài lòng tuần {card.week.label()}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 11)
    pdf.cell(0, 7, f"Trung tâm: {card.centre_name}", new_x="LMARGIN", new_y="NEXT")
    response = card.centre_rated / card.centre_served if card.centre_served else None
    pdf.cell(0, 7, f"Toàn trung tâm: n = {card.centre_rated}, tỷ lệ hài lòng {pct(card.centre_ratio)}, "
                   f"tỷ lệ phản hồi {pct(response)}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    widths = (38, 62, 16, 36, 36)
    pdf.cells(widths, ("Hạng", "Cán bộ", "n", "Tỷ lệ hài lòng", "Tỷ lệ phản hồi"), bold=True)
    for o in card.officers:
        pdf.cells(widths, (rank_text(card, o) if o.rank is not None else f"— (n < {card.min_sample})", o.name,
                           str(o.rated), pct(o.ratio), pct(o.response_rate)))
    pdf.ln(3)
    channel_table(pdf, card)
    pdf.ln(3)
    pdf.set_font("DejaVu", "", 8)
    pdf.multi_cell(0, 4, RULES.format(min_sample=card.min_sample), new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 4, CHANNEL_RULE, new_x="LMARGIN", new_y="NEXT")


def web_delay_line(card: CentreWeek) -> str:
    if card.web_delay_median_s is None:
        return "Đánh giá qua web sau khi đóng vé: không có đánh giá qua web (no web rating)"
    return (f"Đánh giá qua web sau khi đóng vé (web rating after the ticket's close): trung vị (median) "
            f"{delay_text(card.web_delay_median_s)}, 90% trong vòng {delay_text(card.web_delay_p90_s)}")


def channel_table(pdf: ScorecardPdf, card: CentreWeek) -> None:
    """Per officer: rated at the counter and on the web, the web's share, the response rate of each channel."""
    pdf.set_font("DejaVu", "B", 12)
    pdf.cell(0, 7, f"Theo kênh đánh giá (by channel): tại quầy {card.centre_rated - card.centre_web}, "
                   f"qua web {card.centre_web}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 10)
    pdf.multi_cell(0, 6, web_delay_line(card), new_x="LMARGIN", new_y="NEXT")
    widths = (52, 22, 22, 30, 32, 32)
    pdf.cells(widths, ("Cán bộ", "Tại quầy", "Qua web", "Tỷ lệ qua web", "Phản hồi quầy", "Phản hồi web"), bold=True)
    for o in card.officers:
        pdf.cells(widths, (o.name, str(o.counter), str(o.web), pct(o.web_share), pct(o.counter_response),
                           pct(o.web_response)))


def reason_list(pdf: ScorecardPdf, title: str, reasons: Counter[str], labels: dict[str, str]) -> None:
    pdf.set_font("DejaVu", "B", 12)
    pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 11)
    for code, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        pdf.cell(0, 6, f"• {labels.get(code, code)}: {n}", new_x="LMARGIN", new_y="NEXT")
    if not reasons:
        pdf.cell(0, 6, "Không có", new_x="LMARGIN", new_y="NEXT")


def officer_page(pdf: ScorecardPdf, card: CentreWeek, o: OfficerWeek, reasons: dict[str, str]) -> None:
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 15)
    pdf.cell(0, 9, f"Phiếu điểm hài lòng tuần {card.week.label()}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 11)
    pdf.cell(0, 7, f"Trung tâm: {card.centre_name} · Cán bộ: {o.name}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for cls in CLASSES:
        pdf.row(CLASS_LABELS[cls], str(o.counts[cls]))
    pdf.row("Số vé được đánh giá (n)", str(o.rated), bold=True)
    pdf.row("Số vé đã phục vụ", str(o.served))
    pdf.row("Tỷ lệ hài lòng", pct(o.ratio), bold=True)
    pdf.row("Tỷ lệ phản hồi", pct(o.response_rate))
    for label, value in zip(CHANNEL_ROWS, (str(o.counter), str(o.web), pct(o.web_share), pct(o.counter_response),
                                           pct(o.web_response)), strict=True):
        pdf.row(label, value)
    pdf.row("Tỷ lệ hài lòng của trung tâm", pct(card.centre_ratio))
    pdf.row("Xếp hạng trong trung tâm", rank_text(card, o), bold=True)
    pdf.ln(4)
    reason_list(pdf, "Lý do — các lượt Không hài lòng", o.reasons, reasons)
    reason_list(pdf, "Lý do kèm lượt hài lòng (gồm Bình thường, tính là hài lòng)", o.reasons_satisfied, reasons)
    pdf.ln(3)
    pdf.image(io.BytesIO(trend_png(o, card.centre_ratio)), w=180)
    pdf.set_font("DejaVu", "", 8)
    pdf.multi_cell(0, 4, RULES.format(min_sample=card.min_sample))


def render_pdf(card: CentreWeek, path: Path, reasons: dict[str, str]) -> None:
    pdf = ScorecardPdf()
    pdf.set_title(f"Phiếu điểm {card.centre_name} {card.week}")
    summary_page(pdf, card)
    for o in card.officers:
        officer_page(pdf, card, o, reasons)
    pdf.output(str(path))


def write_weekly(s: DashboardSettings, centre: str, week: IsoWeek, out_dir: Path, weeks_back: int = 8,
                 names: dict[str, str] | None = None, centre_name: str = "") -> tuple[Path, Path]:
    """Raises NoScorecardData (nothing to report) before writing any file."""
    card = weekly_scorecard(s.influx.query_client(), centre, week, s.timezone, s.min_sample, weeks_back, names,
                            centre_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    pdf_path = out_dir / f"scorecard-{centre}-{week}.pdf"
    csv_path = out_dir / f"scorecard-{centre}-{week}.csv"
    render_pdf(card, pdf_path, s.reasons)
    write_csv(card, csv_path)
    return pdf_path, csv_path
