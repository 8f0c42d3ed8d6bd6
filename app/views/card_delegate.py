"""How a model card is drawn in the Discover list: a rounded panel of four lines.

::

    llama3.2:1b                                        Recommended
    1.2B parameters · 810 MB–1.3 GB · Llama 3.2 licence
    Meta's smallest Llama 3.2: fast everyday chat on any machine.
    Best here: Q4_K_M, about 810 MB                    [Full GPU]

Painted by a delegate rather than built from widgets: a list view keeps keyboard navigation,
selection and accessibility (the model's ``AccessibleTextRole``) for free, and a hundred
cards cost nothing. The selected card gets the palette's highlight as a border and a tint,
the current one a focus ring, so arrow keys always move something visible. Colours come
from the palette (light and dark alike); the fit badge's from ``fit_badge``.

GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from app.views.fit_badge import fit_hex, on_fill
from app.views.model_cards import CARD_ROLE, ModelCard

PADDING = 12
LINE_GAP = 3
RADIUS = 8
BADGE_PAD = 8
CARD_MARGIN = 4  # between neighbouring cards


def _title_font(base: QFont) -> QFont:
    font = QFont(base)
    font.setPointSizeF(base.pointSizeF() * 1.15 if base.pointSizeF() > 0 else 11)
    font.setBold(True)
    return font


class CardDelegate(QStyledItemDelegate):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)

    def sizeHint(self, option: QStyleOptionViewItem,
                 index: QModelIndex | QPersistentModelIndex) -> QSize:
        body = QFontMetrics(option.font).height()
        title = QFontMetrics(_title_font(option.font)).height()
        height = 2 * PADDING + title + 3 * body + 3 * LINE_GAP + 4 + 2 * CARD_MARGIN
        # As wide as the list's viewport (less the scroll bar's room), so a card fills it.
        view = option.widget
        width = view.viewport().width() - 2 if hasattr(view, "viewport") else 280
        return QSize(max(240, width), height)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        card = index.data(CARD_ROLE)
        if not isinstance(card, ModelCard):
            super().paint(painter, option, index)
            return
        palette: QPalette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        focused = bool(option.state & QStyle.StateFlag.State_HasFocus)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        rect = option.rect.adjusted(CARD_MARGIN, CARD_MARGIN, -CARD_MARGIN, -CARD_MARGIN)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._panel(painter, palette, QRectF(rect), selected, focused, hovered)
        inner = rect.adjusted(PADDING, PADDING, -PADDING, -PADDING)
        self._text(painter, option, palette, inner, card)
        painter.restore()

    @staticmethod
    def _panel(painter: QPainter, palette: QPalette, rect: QRectF, selected: bool,
               focused: bool, hovered: bool) -> None:
        highlight = palette.color(QPalette.ColorRole.Highlight)
        fill = QColor(palette.color(QPalette.ColorRole.Base))
        if selected:  # a tint of the highlight: the text stays in the normal colours
            tint = QColor(highlight)
            tint.setAlpha(40)
            painter.setBrush(fill)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawRoundedRect(rect, RADIUS, RADIUS)
            fill = tint
        elif hovered:
            fill = palette.color(QPalette.ColorRole.AlternateBase)
        border = highlight if selected else palette.color(QPalette.ColorRole.Mid)
        painter.setBrush(fill)
        painter.setPen(QPen(border, 2 if selected else 1))
        painter.drawRoundedRect(rect.adjusted(0.5, 0.5, -0.5, -0.5), RADIUS, RADIUS)
        if focused:  # keyboard focus: a ring outside the border, visible on any fill
            style = Qt.PenStyle.SolidLine if selected else Qt.PenStyle.DotLine
            ring = QPen(highlight, 2, style)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(ring)
            painter.drawRoundedRect(rect.adjusted(-2.5, -2.5, 2.5, 2.5), RADIUS + 2, RADIUS + 2)

    def _text(self, painter: QPainter, option: QStyleOptionViewItem, palette: QPalette,
              inner: QRect, card: ModelCard) -> None:
        text = palette.color(QPalette.ColorRole.Text)
        muted = palette.color(QPalette.ColorRole.PlaceholderText)
        body = QFontMetrics(option.font)
        title_font = _title_font(option.font)
        title_h = QFontMetrics(title_font).height()
        y = inner.top()

        tag_width = 0
        if card.recommended:
            tag = "Recommended"
            tag_width = body.horizontalAdvance(tag) + 2 * BADGE_PAD
            tag_rect = QRect(inner.right() - tag_width, y, tag_width, title_h)
            self._pill(painter, tag_rect, tag, palette.color(QPalette.ColorRole.Highlight),
                       palette.color(QPalette.ColorRole.HighlightedText), option.font)
        painter.setFont(title_font)
        painter.setPen(text)
        title_rect = QRect(inner.left(), y, inner.width() - tag_width - 8, title_h)
        painter.drawText(title_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         QFontMetrics(title_font).elidedText(card.title,
                                                             Qt.TextElideMode.ElideRight,
                                                             title_rect.width()))
        y += title_h + LINE_GAP
        painter.setFont(option.font)
        for line, colour in ((" · ".join(card.facts), muted), (card.description, text)):
            painter.setPen(colour)
            painter.drawText(QRect(inner.left(), y, inner.width(), body.height()),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             body.elidedText(line, Qt.TextElideMode.ElideRight, inner.width()))
            y += body.height() + LINE_GAP

        badge_width = 0
        if card.best is not None:
            label = card.best.fit.label
            badge_width = body.horizontalAdvance(label) + 2 * BADGE_PAD
            fill = fit_hex(card.best.fit.kind)
            colour, on = QColor(fill), on_fill(fill)
            self._pill(painter, QRect(inner.right() - badge_width, y, badge_width,
                                      body.height() + 2), label, colour, on, option.font)
        painter.setPen(text if card.best is not None else muted)
        width = inner.width() - badge_width - 8
        painter.drawText(QRect(inner.left(), y, width, body.height() + 2),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         body.elidedText(card.best_line, Qt.TextElideMode.ElideRight, width))

    @staticmethod
    def _pill(painter: QPainter, rect: QRect, label: str, fill: QColor, on: QColor,
              font: QFont) -> None:
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawRoundedRect(QRectF(rect), rect.height() / 2, rect.height() / 2)
        bold = QFont(font)
        bold.setBold(True)
        painter.setFont(bold)
        painter.setPen(on)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)
        painter.setFont(font)
