"""The main window: sidebar | pages (Chat, Models, Server) | parameter panel, status bar.

It wires pages to each other through their signals and owns nothing else: each page talks to
the one ``Hearth`` itself. Threading contract: GUI thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QMenu,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.views.banner import Banner
from app.views.chat_page import ChatPage
from app.views.focus_order import RegionOrder, laid_out
from app.views.knowledge_page import KnowledgePage
from app.views.models_page import ModelsPage
from app.views.page_stack import PageStack
from app.views.parameter_panel import ParameterPanel
from app.views.server_page import ServerPage
from app.views.sidebar import Sidebar
from app.views.status_bar import StatusBar
from app.views.theme_menu import ThemeChooser
from backend.api import Hearth, LoadedModel, ServerState, ServerStatus
from backend.errors import BackendError

if TYPE_CHECKING:
    from app.views.connections_dialog import ConnectionsDialog
    from app.views.tools_page import McpServersDialog

PAGES = ("chat", "models", "server", "documents")


class MainWindow(QMainWindow):
    closed = Signal()

    def __init__(self, hearth: Hearth, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self.setWindowTitle("Hearth")
        self.resize(1280, 800)
        # Light, dark or the desktop's: the palette and the stylesheet, app-wide (dialogs too).
        self.theme = ThemeChooser(hearth, self)

        self.banner = Banner(self)
        self.chat = ChatPage(hearth, self)
        self.models = ModelsPage(hearth, self)
        self.server = ServerPage(hearth, self)
        self.documents = KnowledgePage(hearth, self)
        self.sidebar = Sidebar(hearth.history, self)
        self.sidebar.setMinimumWidth(200)
        self.pages = PageStack(self)  # sized by the page shown, not the widest
        for page in (self.chat, self.models, self.server, self.documents):
            page.setProperty("surface", "page")  # the stylesheet's reading background
            page.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
            self.pages.addWidget(page)

        centre = QWidget(self)
        column = QVBoxLayout(centre)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.banner)
        column.addWidget(self.pages, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(centre)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([240, 1040])
        splitter.setChildrenCollapsible(False)
        splitter.setHandleWidth(1)  # a hairline, drawn in the palette's border colour
        self.setCentralWidget(splitter)

        self.parameters = ParameterPanel(hearth, self)
        self.parameter_dock = QDockWidget("Parameters", self)
        self.parameter_dock.setObjectName("parameter_dock")
        self.parameter_dock.setWidget(self.parameters)
        self.parameter_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable
                                        | QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.parameter_dock.setMinimumWidth(260)  # the window still fits 800 px with it
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.parameter_dock)
        self._panel_wanted = True  # the panel belongs to the chat: shown there unless closed

        self.status = StatusBar(hearth.probe_hardware, self)
        self.setStatusBar(self.status)
        self._build_menus()
        self._connect()
        self._focus_order = RegionOrder(self, self._focus_regions)
        self._focus_order.apply()
        self.show_page("chat")

    def _focus_regions(self) -> list[QWidget]:
        """Tab follows the layout: the rail, the chats, the page shown (the chat's parts top
        to bottom: its replies made since included), the panel."""
        return [self.sidebar.rail, self.sidebar, *laid_out(self.chat.layout()), self.pages,
                self.parameters]

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # Outside a dialog a push button answers Space only and passes Enter up to here: a
        # keyboard user's Enter on the rail's page icons, a reply's Copy or a card's button
        # did nothing. So Enter clicks the focused button, wherever it is in the window.
        focused = self.focusWidget()
        if (event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not event.modifiers()
                and isinstance(focused, QPushButton | QToolButton) and focused.isEnabled()):
            focused.click()
            return
        super().keyPressEvent(event)

    def focusNextPrevChild(self, next: bool) -> bool:
        self._focus_order.apply()  # replies and rows made since joined Qt's chain at its end
        return super().focusNextPrevChild(next)

    # -- wiring ----------------------------------------------------------------------------
    def _build_menus(self) -> None:
        chat = self.menuBar().addMenu("&Chat")
        self.new_chat_action = self._action(chat, "&New chat", QKeySequence.StandardKey.New,
                                            self.new_chat)
        self.stop_action = self._action(chat, "&Stop reply / cancel edit", QKeySequence("Esc"),
                                        self.chat.stop_reply)
        self.picker_action = self._action(chat, "Pick a &model…", QKeySequence("Ctrl+K"),
                                          self.pick_model)
        self.regenerate_action = self._action(chat, "&Regenerate reply",
                                              QKeySequence("Ctrl+R"), self.chat.regenerate)
        chat.addSeparator()
        self._action(chat, "Remote &connections…", QKeySequence("Ctrl+Shift+C"),
                     self.edit_connections)
        self._action(chat, "&Tools (MCP servers)…", QKeySequence("Ctrl+Shift+T"),
                     self.edit_tools)
        chat.addSeparator()
        self._action(chat, "&Quit", QKeySequence.StandardKey.Quit, self.close)
        view = self.menuBar().addMenu("&View")
        for index, name in enumerate(PAGES, start=1):
            self._action(view, name.title(), QKeySequence(f"Ctrl+{index}"),
                         lambda name=name: self.show_page(name))
        view.addSeparator()
        view.addMenu(self.theme.menu(self))
        self.theme_button = self.sidebar.rail.add_bottom_button(
            "theme_button", "theme", "Theme: follow system, light or dark", "Theme")
        self.theme_button.setMenu(self.theme.menu(self))
        view.addSeparator()
        toggle = self.parameter_dock.toggleViewAction()
        toggle.setText("&Parameters")
        toggle.setShortcut(QKeySequence("Ctrl+Shift+P"))
        view.addAction(toggle)

    def _action(self, menu: QMenu, text: str, keys: QKeySequence | QKeySequence.StandardKey,
                slot: Callable[[], object]) -> QAction:
        action = QAction(text, self)
        action.setShortcut(keys)
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def _connect(self) -> None:
        self.sidebar.page_requested.connect(self.show_page)
        self.sidebar.new_chat_requested.connect(self.new_chat)
        self.sidebar.conversation_selected.connect(self.open_conversation)
        self.sidebar.conversation_deleted.connect(self._conversation_deleted)
        self.chat.conversation_changed.connect(self._conversation_changed)
        self.chat.model_loaded.connect(self._model_loaded)
        self.chat.model_changed.connect(self.status.show_model)
        self.chat.reply_starting.connect(self.parameters.flush)  # a prompt still being typed
        self.chat.remote_model_chosen.connect(
            lambda model: self.status.model_label.setText(f"{model} · remote"))
        self.chat.reply_finished.connect(self.status.show_reply)
        self.chat.streaming_changed.connect(self._streaming_changed)
        self.models.model_chosen.connect(self.use_model)
        # Each chat's system prompt lives with the chat: the panel shows and edits the shown
        # one's, and what is still being typed applies before another chat is shown.
        self.chat.leaving_conversation.connect(self.parameters.flush)
        self.chat.conversation_shown.connect(self.parameters.show_system_prompt)
        self.parameters.system_prompt_edited.connect(self.chat.set_system_prompt)
        # Load settings apply before the next message: Send says so, and the panel until then.
        self.parameters.load_settings_changed.connect(self.chat.indicators.refresh)
        self.chat.model_changed.connect(lambda _loaded: self.parameters.show_reload_pending())
        self.chat.streaming_chats_changed.connect(self.sidebar.set_streaming)
        self.server.server_state_changed.connect(self._server_state)
        self.documents.collections_changed.connect(self.chat.documents.refresh)
        self.chat.documents.bar.documents_requested.connect(
            lambda: self.show_page("documents"))
        # A suggestion's chip goes with the welcome: the keyboard goes on in the message box.
        self.chat.welcome.suggestion_chosen.connect(lambda _prompt: self.chat.composer.setFocus())
        for page in (self.chat, self.models, self.server, self.parameters, self.documents):
            page.problem.connect(self.banner.show_message)
        self.theme.problem.connect(self.banner.show_message)

    # -- intents ---------------------------------------------------------------------------
    def show_page(self, name: str) -> None:
        if self.pages.currentWidget() is self.chat and name != "chat":
            self._panel_wanted = self.parameter_dock.isVisible()
        self.pages.setCurrentIndex(PAGES.index(name))
        self.sidebar.set_page(name)
        self.parameter_dock.setVisible(name == "chat" and self._panel_wanted)
        if name == "chat":
            self.chat.composer.setFocus()  # Ctrl+1, type, Enter

    def new_chat(self) -> None:
        if self.chat.new_chat():
            self.show_page("chat")

    def open_conversation(self, conversation_id: int) -> None:
        if self.chat.open_conversation(conversation_id):
            self.show_page("chat")
        else:
            self.sidebar.select(self.chat.conversation_id)

    def pick_model(self) -> None:
        self.show_page("chat")
        self.chat.focus_model_picker()

    def use_model(self, name: str) -> None:
        self.show_page("chat")
        self.chat.load_model(name)

    def load_model(self, name: str) -> None:
        self.chat.load_model(name)

    def edit_connections(self) -> ConnectionsDialog:
        from app.views.connections_dialog import ConnectionsDialog

        dialog = ConnectionsDialog(self._hearth, self)
        dialog.connections_changed.connect(self.chat.refresh_models)
        dialog.open()  # not exec(): a nested modal loop would stall asyncio
        self.connections_dialog = dialog
        return dialog

    def edit_tools(self) -> McpServersDialog:
        from app.views.tools_page import McpServersDialog

        dialog = McpServersDialog(self._hearth, self)
        dialog.problem.connect(self.banner.show_message)
        dialog.open()  # not exec(): a nested modal loop would stall asyncio
        self.tools_dialog = dialog
        return dialog

    def _conversation_changed(self, conversation_id: int | None) -> None:
        self.sidebar.refresh()
        self.sidebar.select(conversation_id)

    def _conversation_deleted(self, conversation_id: int) -> None:
        if self.chat.conversation_id == conversation_id:
            self.chat.new_chat()

    def _model_loaded(self, loaded: LoadedModel) -> None:
        self.status.show_model(loaded)
        self.parameters.set_model(loaded.model_id)
        if self._hearth.settings.snapshot().default_model == loaded.model_id:
            return
        try:  # reopen with it next time
            self._hearth.settings.update(default_model=loaded.model_id)
        except BackendError as exc:
            self.banner.show_message(exc.user_message)
        except OSError as exc:
            self.banner.show_message(f"Hearth couldn't save your settings ({exc.strerror or exc})"
                                     "; check that the disk has space.")

    def _streaming_changed(self, streaming: bool) -> None:
        self.sidebar.refresh()  # the title, and the order by last activity

    def _server_state(self, status: ServerStatus) -> None:
        if status.state == ServerState.RUNNING and status.url:
            self.status.show_server(f"API on {status.url}")
        elif status.state == ServerState.FAILED:
            self.status.show_server("API failed")
        else:
            self.status.show_server("")

    def closeEvent(self, event: QCloseEvent) -> None:
        # Stop everything that would fire later: the event loop may be gone by then.
        self.chat.replies.stop_all()  # every chat's reply
        self.chat.shutdown()
        self.parameters.shutdown()
        self.models.shutdown()
        self.server.shutdown()
        self.documents.shutdown()
        self.status.stop()
        super().closeEvent(event)
        self.closed.emit()
