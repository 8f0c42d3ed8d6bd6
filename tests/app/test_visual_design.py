"""The visual pass as one design: palettes, themed icons, the rail, hover actions, the reading
column, styled prose, the composer, focus rings, and a window usable at 800x600."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import qasync
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QColor, QEnterEvent, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QPushButton
from pytestqt.qtbot import QtBot

from app.icons import ICON_DIR, icon
from app.main_window import MainWindow
from app.palette import DARK, LIGHT, PALETTES, contrast
from app.prose_html import prose_html
from app.style import style_sheet
from app.theme import apply_theme, current_palette, resolve
from app.views.reading_column import READING_WIDTH
from app.views.transcript import TranscriptView
from backend.api import Hearth

REPLY = """## Steps

Use `reverse(s)` here.

> Quoted wisdom.

| Word | Length |
|------|-------:|
| tea | 3 |

<b>not markup</b>
"""


@pytest.fixture
def window(qtbot: QtBot, qasync_loop: qasync.QEventLoop, hearth: Hearth) -> Iterator[MainWindow]:
    window = MainWindow(hearth)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.close()
    apply_theme(QApplication.instance(), LIGHT)  # type: ignore[arg-type]


# -- the palettes ---------------------------------------------------------------------------

@pytest.mark.parametrize("palette", PALETTES.values(), ids=PALETTES.keys())
def test_palettes_keep_text_readable(palette) -> None:
    """WCAG AA: body and muted text 4.5:1 on every surface they sit on; the focus ring and
    icons 3:1 (non-text)."""
    for background in ("page", "surface", "raised", "window", "code_bg", "inline_code_bg",
                       "table_header_bg", "quote_bg", "accent_soft", "error_bg"):
        assert contrast(palette.text, getattr(palette, background)) >= 4.5, background
    for background in ("page", "surface", "window", "raised", "quote_bg"):
        assert contrast(palette.muted, getattr(palette, background)) >= 4.5, background
    assert contrast(palette.on_accent, palette.accent) >= 4.5
    for background in ("page", "surface", "window"):
        assert contrast(palette.focus, getattr(palette, background)) >= 3.0, background
    assert contrast(palette.accent, palette.accent_soft) >= 3.0  # the current page's icon
    assert set(LIGHT.colours()) == set(DARK.colours())
    # Status text (fit verdicts) reads on the surfaces it is drawn on; chart parts are
    # graphics: 3:1 against the bar's track.
    for role in ("success", "warning", "error"):
        for background in ("surface", "window", "page"):
            assert contrast(getattr(palette, role), getattr(palette, background)) >= 4.5, \
                (role, background)
    for role in ("chart_weights", "chart_kv", "chart_compute", "chart_runtime"):
        assert contrast(getattr(palette, role), palette.surface) >= 3.0, role


def test_fit_and_memory_colours_come_from_the_theme(qapp: QApplication) -> None:
    from app.views.conversation_list import streaming_dot
    from app.views.fit_badge import fit_hex, on_fill
    from app.views.memory_bar import Segment

    for palette in PALETTES.values():
        apply_theme(qapp, palette)
        assert fit_hex("full_gpu") == palette.success
        assert fit_hex("too_large") == palette.error
        assert Segment("Weights", 1, "chart_weights").color.name() == palette.chart_weights
        dot = streaming_dot().pixmap(12, 12).toImage().pixelColor(6, 6)
        assert dot.name() == palette.success
        fill = fit_hex("partial")
        label = on_fill(fill).name()
        assert contrast(label, fill) >= 4.5
    apply_theme(qapp, LIGHT)


def test_the_stylesheet_takes_every_colour_from_the_palette() -> None:
    import re

    for palette in PALETTES.values():
        used = set(re.findall(r"#[0-9a-fA-F]{6}", style_sheet(palette)))
        assert used <= set(palette.colours().values()), used - set(palette.colours().values())


def test_a_saved_choice_picks_the_palette() -> None:
    assert resolve("dark", system_dark=False) is DARK
    assert resolve("light", system_dark=True) is LIGHT
    assert resolve("system", system_dark=True) is DARK
    assert resolve("system", system_dark=False) is LIGHT


# -- rendered prose ---------------------------------------------------------------------------

def test_prose_gets_the_type_scale_quotes_code_and_table_headers() -> None:
    html = prose_html(REPLY, LIGHT)
    assert "<h2 style=\"font-size:1.30em; font-weight:600; margin-top:0px" in html
    assert f"background-color:{LIGHT.inline_code_bg}" in html  # inline code
    assert f"background-color:{LIGHT.quote_bar}" in html  # the quote's left rule
    assert f"<th style=\"background-color:{LIGHT.table_header_bg}; font-weight:600; " \
           "text-align:left;\">Word</th>" in html
    assert "text-align:right" in html  # a GFM column alignment survives
    assert "&lt;b&gt;not markup&lt;/b&gt;" in html  # a reply's HTML is text, not markup
    later = prose_html("Intro\n\n### Later", DARK)
    assert "margin-top:16px" in later and DARK.inline_code_bg not in later


# -- icons ------------------------------------------------------------------------------------

def test_every_icon_draws_in_the_theme_colour(qapp: QApplication) -> None:
    for path in sorted(ICON_DIR.glob("*.svg")):
        for palette in PALETTES.values():
            apply_theme(qapp, palette)
            image = icon(path.stem).pixmap(24, 24).toImage()
            drawn = [image.pixelColor(x, y) for x in range(24) for y in range(24)
                     if image.pixelColor(x, y).alpha() > 200]
            assert drawn, path.name
            want = QColor(palette.muted)
            assert all(max(abs(c.red() - want.red()), abs(c.green() - want.green()),
                           abs(c.blue() - want.blue())) <= 3 for c in drawn), path.name
            disabled = icon(path.stem).pixmap(24, 24, QIcon.Mode.Disabled).toImage()
            assert any(disabled.pixelColor(x, y).name() == palette.faint
                       for x in range(24) for y in range(24)
                       if disabled.pixelColor(x, y).alpha() > 200), path.name
    apply_theme(qapp, LIGHT)
    with pytest.raises(FileNotFoundError):
        icon("no-such-icon")


# -- the window -------------------------------------------------------------------------------

def test_the_rail_is_icons_with_names_and_switches_pages(qtbot: QtBot,
                                                         window: MainWindow) -> None:
    rail = window.sidebar.rail
    assert rail.width() <= 64
    for name, button in rail.buttons.items():
        assert button.text() == "" and not button.icon().isNull()
        assert button.accessibleName() and "Ctrl+" in button.toolTip()
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert window.sidebar.nav_buttons[name].isChecked()
    qtbot.mouseClick(rail.buttons["chat"], Qt.MouseButton.LeftButton)
    assert window.pages.currentWidget() is window.chat
    assert window.theme_button.accessibleName() == "Theme"


def test_the_theme_follows_the_choice_and_is_saved(qtbot: QtBot, window: MainWindow,
                                                   hearth: Hearth) -> None:
    app = QApplication.instance()
    window.theme.choose("dark")
    assert current_palette() is DARK
    assert app.palette().color(QPalette.ColorRole.Window).name() == DARK.window
    assert hearth.settings.snapshot().appearance.theme == "dark"
    assert window.theme.actions["dark"].isChecked()
    window.theme.choose("light")
    assert app.palette().color(QPalette.ColorRole.Base).name() == LIGHT.surface
    assert hearth.settings.snapshot().appearance.theme == "light"
    with pytest.raises(ValueError):
        window.theme.controller.set_choice("sepia")


def test_message_actions_are_icons_shown_on_hover_or_focus(qtbot: QtBot,
                                                           window: MainWindow) -> None:
    transcript = window.chat.transcript
    window.chat.body.setCurrentWidget(transcript)
    reply = transcript.add_message("assistant", "Hello there.")
    reply.finish()
    for button in (reply.copy_button, reply.delete_button):
        assert button.toolButtonStyle() == Qt.ToolButtonStyle.ToolButtonIconOnly
        assert not button.icon().isNull() and button.accessibleName()
    assert not reply.reveal.revealed
    QApplication.sendEvent(reply, QEnterEvent(QPointF(5, 5), QPointF(5, 5), QPointF(5, 5)))
    assert reply.reveal.revealed
    QApplication.sendEvent(reply, QEvent(QEvent.Type.Leave))
    assert not reply.reveal.revealed
    reply.copy_button.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(lambda: reply.reveal.revealed)  # the keyboard reaches them too
    reply.show_retry(True)
    window.chat.composer.setFocus()
    qtbot.waitUntil(lambda: not reply.copy_button.hasFocus())
    assert reply.reveal.revealed and reply.retry_button.isVisibleTo(reply)  # failed: kept


def test_the_reading_column_is_centred_and_bounded(qtbot: QtBot, window: MainWindow) -> None:
    window.parameter_dock.hide()
    window.resize(1600, 900)
    transcript: TranscriptView = window.chat.transcript
    window.chat.body.setCurrentWidget(transcript)
    view = transcript.add_message("user", "A question " * 40)
    qtbot.waitUntil(lambda: view.width() > 0)
    qtbot.wait(50)
    viewport = transcript.viewport().width()
    assert view.width() <= READING_WIDTH
    left = view.mapTo(transcript.viewport(), view.rect().topLeft()).x()
    assert abs(left - (viewport - view.width() - left)) <= 2  # centred
    box = window.chat.input.box
    assert box.width() <= READING_WIDTH
    box_left = box.mapTo(window.chat, box.rect().topLeft()).x()
    view_left = view.mapTo(window.chat, view.rect().topLeft()).x()
    assert abs(box_left - view_left) <= 2  # the composer lines up with the messages


def test_send_and_stop_sit_inside_the_rounded_composer(window: MainWindow) -> None:
    chat = window.chat
    box = chat.input.box
    assert box.objectName() == "composer_box"
    for part in (chat.composer, chat.send_button, chat.stop_button):
        assert box.isAncestorOf(part)
    assert chat.send_button.text() == "" and chat.send_button.accessibleName()
    assert not chat.stop_button.isVisibleTo(chat)  # only while this chat's reply streams
    chat.input.set_state(can_send=False, can_stop=True, stopping=False, reason="Writing…")
    assert chat.stop_button.isVisibleTo(chat) and chat.stop_button.text() == "Stop"


def test_focus_rings_are_drawn(qtbot: QtBot, window: MainWindow) -> None:
    """The composer's box shows a ring in the focus colour while the message box has focus;
    every other control gets a 2 px ring from the stylesheet."""
    chat = window.chat
    chat.composer.setFocus()
    qtbot.waitUntil(chat.composer.hasFocus)
    assert chat.input.box.property("focused") is True
    chat.send_button.setFocus()
    qtbot.waitUntil(lambda: chat.input.box.property("focused") is False)
    sheet = QApplication.instance().styleSheet()
    for selector in ("QPushButton:focus", "QToolButton:focus", "QLineEdit:focus",
                     "#nav_rail QPushButton:focus", "QAbstractItemView:focus"):
        assert f"{selector} {{ border: 2px solid {current_palette().focus}" in sheet or \
            f"{selector}, " in sheet, selector


@pytest.mark.parametrize("page", ["chat", "models", "server", "documents"])
def test_the_window_is_usable_at_800x600(qtbot: QtBot, window: MainWindow, page: str) -> None:
    window.show_page(page)
    if page == "chat":
        assert window.parameter_dock.isVisible()  # with the panel open
    hint = window.minimumSizeHint()
    assert hint.width() <= 800 and hint.height() <= 600, hint
    window.resize(800, 600)
    qtbot.waitUntil(lambda: window.width() == 800 and window.height() == 600)
    current = window.pages.currentWidget()
    assert current.width() >= current.minimumSizeHint().width()
    if page == "chat":
        for part in (window.chat.composer, window.chat.send_button, window.chat.model_picker):
            top_left = part.mapTo(window, part.rect().topLeft())
            bottom_right = part.mapTo(window, part.rect().bottomRight())
            assert window.rect().contains(top_left) and window.rect().contains(bottom_right)
            assert part.isVisible() and part.width() > 20, part.objectName()
    buttons = window.sidebar.rail.findChildren(QPushButton)
    assert all(b.isVisible() for b in buttons)
