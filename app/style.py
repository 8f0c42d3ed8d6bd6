"""The window's colours, derived from the system palette so light and dark both work."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

ERROR_COLOUR = "#c62828"  # a red that reads on white and on dark greys alike


def mix(a: QColor, b: QColor, amount: float) -> str:
    """``amount`` of ``b`` blended into ``a``, as a stylesheet colour."""
    return QColor(
        round(a.red() + (b.red() - a.red()) * amount),
        round(a.green() + (b.green() - a.green()) * amount),
        round(a.blue() + (b.blue() - a.blue()) * amount),
    ).name()


def window_style_sheet(palette: QPalette) -> str:
    role = QPalette.ColorRole
    base, text = palette.color(role.Base), palette.color(role.Text)
    accent = palette.color(role.Highlight)
    page = mix(base, text, 0.04)  # the transcript: a shade off the bubbles behind it
    user = mix(base, accent, 0.14)  # the user's turns: tinted, yet text keeps its contrast
    border = mix(base, text, 0.14)
    dim = mix(text, base, 0.45)  # secondary text (reply stats), still readable
    code = mix(base, text, 0.06)
    banner = mix(base, QColor(ERROR_COLOUR), 0.16)
    return f"""
        #transcript, #transcript_column {{ background: {page}; }}
        QFrame#message_user {{ background: {user}; border: 1px solid {border};
                               border-radius: 10px; }}
        QFrame#message_assistant, QFrame#message_notice {{
            background: {base.name()}; border: 1px solid {border}; border-radius: 10px; }}
        QLabel#message_title {{ font-weight: 600; }}
        QLabel#message_footer, QLabel#context_meter, QLabel#verdict_label,
        QLabel#edit_notice {{ color: {dim}; }}
        QLabel#edit_notice {{ padding: 2px 16px; }}
        QLabel#message_footer[error="true"] {{ color: {ERROR_COLOUR}; }}
        QFrame#message_user QLabel, QFrame#message_assistant QLabel,
        QFrame#message_notice QLabel {{ background: transparent; border: none; }}
        QFrame#message_user QToolButton, QFrame#message_assistant QToolButton {{
            color: {dim}; }}
        QFrame#code_block {{ background: {code}; border: 1px solid {border};
                             border-radius: 6px; }}
        QLabel#code_language {{ color: {dim}; }}
        QPlainTextEdit#composer {{ border: 1px solid {border}; border-radius: 8px;
                                   padding: 4px; background: {base.name()}; }}
        QFrame#banner {{ background: {banner}; border-bottom: 1px solid {border}; }}
    """
