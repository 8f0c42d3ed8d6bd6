"""The application stylesheet, made from one ``Palette`` (app/palette.py): one design.

Shapes and spacing are fixed here (radii, paddings, the focus ring's width); colours all come
from the palette, so the light and the dark theme are the same design in two lights. Widgets
opt into the special looks by object name (``nav_*``, ``message_*``, ``composer_box``…) or by
a dynamic property (``error="true"``, ``focused="true"``), never by setting colours themselves.

Focus rings: every focusable control draws a 2 px ring in ``focus`` when it has the keyboard
focus; its normal border is 1 px with 1 px more padding, so the ring never shifts the layout.
"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from app.palette import Palette

RADIUS = 8  # buttons and inputs
CARD_RADIUS = 14  # the user's bubbles, the composer


def mark_error(widget: QWidget, error: bool = True) -> None:
    """Draw ``widget``'s text in the theme's error colour (or not): a property the stylesheet
    reads, re-polished so it applies now; the colour follows a theme switch."""
    widget.setProperty("error", error)
    widget.style().unpolish(widget)
    widget.style().polish(widget)


def style_sheet(p: Palette) -> str:
    return "\n".join((_base(p), _inputs(p), _chrome(p), _chat(p)))


def _base(p: Palette) -> str:
    return f"""
QToolTip {{ background: {p.surface}; color: {p.text}; border: 1px solid {p.border};
            padding: 4px 6px; }}
QPushButton {{ background: {p.surface}; color: {p.text}; border: 1px solid {p.border};
               border-radius: {RADIUS}px; padding: 5px 13px; min-height: 18px; }}
QPushButton:hover {{ background: {p.raised}; border-color: {p.border_strong}; }}
QPushButton:pressed, QPushButton:checked {{ background: {p.accent_soft}; }}
QPushButton:focus {{ border: 2px solid {p.focus}; padding: 4px 12px; }}
QPushButton:disabled {{ color: {p.faint}; background: {p.window}; border-color: {p.border}; }}
QPushButton:flat {{ background: transparent; border-color: transparent; }}
QPushButton:flat:hover {{ background: {p.raised}; }}
QPushButton:flat:focus {{ border: 2px solid {p.focus}; }}
QToolButton {{ background: transparent; color: {p.text}; border: 1px solid transparent;
               border-radius: 6px; padding: 3px; }}
QToolButton:hover {{ background: {p.raised}; }}
QToolButton:focus {{ border: 2px solid {p.focus}; padding: 2px; }}
QLabel {{ background: transparent; }}
QLabel:disabled {{ color: {p.faint}; }}
QLabel[error="true"] {{ color: {p.error}; }}
QCheckBox:focus, QRadioButton:focus {{ color: {p.text}; background: {p.accent_soft};
                                       border-radius: 4px; }}
QScrollBar:vertical {{ background: transparent; width: 10px; margin: 2px; }}
QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 2px; }}
QScrollBar::handle {{ background: {p.border}; border-radius: 3px; min-height: 28px;
                     min-width: 28px; }}
QScrollBar::handle:hover {{ background: {p.border_strong}; }}
QScrollBar::add-line, QScrollBar::sub-line {{ width: 0; height: 0; }}
QScrollBar::add-page, QScrollBar::sub-page {{ background: transparent; }}
QProgressBar {{ background: {p.raised}; border: none; border-radius: 3px; color: {p.text};
                text-align: center; }}
QProgressBar::chunk {{ background: {p.accent}; border-radius: 3px; }}
"""


def _inputs(p: Palette) -> str:
    # Combo and spin boxes are left to Fusion (drawn in the palette's colours, its own focus
    # frame in the accent): a stylesheet border would take their arrows away.
    fields = "QLineEdit, QPlainTextEdit, QTextEdit"
    focused = ", ".join(f"{name.strip()}:focus" for name in fields.split(","))
    return f"""
{fields} {{ background: {p.surface}; color: {p.text}; border: 1px solid {p.border};
           border-radius: {RADIUS - 2}px; padding: 4px 6px;
           selection-background-color: {p.selection}; selection-color: {p.text}; }}
QLineEdit:hover {{ border-color: {p.border_strong}; }}
{focused} {{ border: 2px solid {p.focus}; padding: 3px 5px; }}
QLineEdit:disabled {{ color: {p.faint}; background: {p.window}; }}
QComboBox QAbstractItemView {{ background: {p.surface}; border: 1px solid {p.border};
           selection-background-color: {p.accent_soft}; selection-color: {p.text}; }}
QAbstractItemView {{ background: {p.surface}; color: {p.text}; border: 1px solid {p.border};
                     border-radius: {RADIUS - 2}px;
                     selection-background-color: {p.accent_soft}; selection-color: {p.text};
                     outline: none; }}
QAbstractItemView:focus {{ border: 2px solid {p.focus}; }}
QHeaderView::section {{ background: {p.table_header_bg}; color: {p.text}; border: none;
                        border-right: 1px solid {p.border}; padding: 4px 6px; }}
QTabWidget::pane {{ border: none; border-top: 1px solid {p.border}; }}
QTabBar::tab {{ background: transparent; color: {p.muted}; padding: 7px 14px;
                border: none; border-bottom: 2px solid transparent; }}
QTabBar::tab:hover {{ color: {p.text}; }}
QTabBar::tab:selected {{ color: {p.text}; border-bottom: 2px solid {p.accent}; }}
QTabBar::tab:focus {{ background: {p.accent_soft}; }}
QGroupBox {{ border: 1px solid {p.border}; border-radius: {RADIUS}px; margin-top: 14px;
             padding: 10px 8px 8px 8px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px;
                    color: {p.muted}; }}
"""


def _chrome(p: Palette) -> str:
    return f"""
QMainWindow, QDialog {{ background: {p.window}; }}
QMenuBar {{ background: {p.window}; color: {p.text}; border-bottom: 1px solid {p.border}; }}
QMenuBar::item {{ padding: 4px 10px; background: transparent; border-radius: 4px; }}
QMenuBar::item:selected {{ background: {p.raised}; }}
QMenu {{ background: {p.surface}; color: {p.text}; border: 1px solid {p.border};
         padding: 4px; }}
QMenu::item {{ padding: 5px 22px 5px 22px; border-radius: 4px; }}
QMenu::item:selected {{ background: {p.accent_soft}; }}
QMenu::separator {{ height: 1px; background: {p.border}; margin: 4px 6px; }}
QStatusBar {{ background: {p.window}; color: {p.muted}; border-top: 1px solid {p.border}; }}
QStatusBar QLabel {{ color: {p.muted}; }}
QStatusBar::item {{ border: none; }}
#status_server, #status_speed, #status_hardware {{ border-left: 1px solid {p.border};
                                                   padding-left: 8px; }}
QSplitter::handle {{ background: {p.border}; }}
QSplitter::handle:horizontal {{ width: 1px; }}
QMainWindow::separator {{ background: {p.border}; width: 1px; height: 1px; }}
QDockWidget {{ color: {p.muted}; }}
QDockWidget::title {{ background: {p.window}; padding: 8px 10px; text-align: left; }}
QWidget[surface="page"] {{ background: {p.page}; }}
#nav_rail {{ background: {p.rail}; border-right: 1px solid {p.border}; }}
#nav_rail QPushButton {{ background: transparent; border: 2px solid transparent;
                         border-radius: 10px; padding: 0; }}
#nav_rail QPushButton:hover {{ background: {p.raised}; }}
#nav_rail QPushButton:checked {{ background: {p.accent_soft}; }}
#nav_rail QPushButton:focus {{ border: 2px solid {p.focus}; }}
#nav_rail QPushButton::menu-indicator {{ image: none; width: 0; }}
#sidebar {{ background: {p.window}; }}
#sidebar QListView {{ background: transparent; border: none; padding: 2px; }}
#sidebar QListView:focus {{ border: 2px solid {p.focus}; padding: 0; }}
#sidebar QListView::item {{ padding: 6px 8px; border-radius: 6px; color: {p.text}; }}
#sidebar QListView::item:hover {{ background: {p.raised}; }}
#sidebar QListView::item:selected {{ background: {p.accent_soft}; color: {p.text}; }}
#sidebar_notice {{ color: {p.muted}; }}
#banner {{ background: {p.error_bg}; border-bottom: 1px solid {p.border}; }}
#banner QLabel {{ color: {p.text}; }}
"""


def _chat(p: Palette) -> str:
    return f"""
#transcript, #transcript_column, #chat_welcome {{ background: {p.page}; }}
QFrame#message_user {{ background: {p.raised}; border: none;
                       border-radius: {CARD_RADIUS}px; }}
QFrame#message_assistant {{ background: transparent; border: none; }}
QFrame#message_notice {{ background: {p.surface}; border: 1px solid {p.border};
                         border-radius: {CARD_RADIUS}px; }}
QLabel#message_title {{ font-weight: 600; color: {p.muted}; }}
QLabel#message_footer, QLabel#context_meter, QLabel#verdict_label, QLabel#edit_notice,
QLabel#send_hint, QLabel#message_status, QLabel#welcome_model, QLabel#code_language {{
    color: {p.muted}; }}
QLabel#message_footer[error="true"], QLabel#send_hint[error="true"] {{ color: {p.error}; }}
QLabel#edit_notice {{ padding: 2px 4px; }}
QLabel#image_notice {{ color: {p.error}; padding: 2px 4px; }}
QToolButton#image_thumb {{ background: {p.surface}; border: 1px solid {p.border};
                           border-radius: 6px; padding: 2px; }}
QToolButton#image_thumb:hover {{ border-color: {p.border_strong}; }}
QToolButton#image_thumb:focus {{ border: 2px solid {p.focus}; padding: 1px; }}
#message_actions QToolButton {{ border-radius: 6px; padding: 3px; }}
QFrame#code_block {{ background: {p.code_bg}; border: 1px solid {p.border};
                     border-radius: {RADIUS}px; }}
QFrame#code_block QLabel {{ background: transparent; }}
QFrame#think_block QLabel {{ color: {p.muted}; }}
QPushButton#suggestion_chip {{ background: {p.surface}; text-align: left;
                               padding: 8px 12px; border-radius: 12px; }}
QPushButton#suggestion_chip:hover {{ background: {p.accent_soft};
                                     border-color: {p.quote_bar}; }}
QPushButton#suggestion_chip:focus {{ padding: 7px 11px; }}
QFrame#composer_box {{ background: {p.surface}; border: 1px solid {p.border_strong};
                       border-radius: {CARD_RADIUS + 2}px; }}
QFrame#composer_box[focused="true"] {{ border: 2px solid {p.focus}; }}
QPlainTextEdit#composer, QPlainTextEdit#composer:focus {{ background: transparent;
    border: none; padding: 2px; }}
QPushButton#send_button {{ background: {p.accent}; border: 2px solid {p.accent};
                           border-radius: 17px; padding: 0; min-width: 30px; max-width: 30px;
                           min-height: 30px; max-height: 30px; }}
QPushButton#send_button:hover {{ background: {p.accent_hover};
                                 border-color: {p.accent_hover}; }}
QPushButton#send_button:focus {{ border: 2px solid {p.focus}; background: {p.accent_hover}; }}
QPushButton#send_button:disabled {{ background: {p.raised}; border-color: {p.raised}; }}
QPushButton#stop_button {{ border-radius: 17px; padding: 0 12px 0 8px; min-height: 32px;
                           max-height: 32px; }}
QPushButton#stop_button:focus {{ padding: 0 11px 0 7px; }}
"""
