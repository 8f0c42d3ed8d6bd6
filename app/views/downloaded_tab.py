"""The Models page's *Downloaded* tab: the models on this machine.

Use one in the chat, delete it (an imported file only leaves the list), show its folder,
import GGUF files by dialog (the page takes drops too). Until a model was picked or
downloaded, a welcome panel offers the starter and the catalog's best pick for this computer.

Threading contract: GUI thread; library calls run off-thread through the page's ``Work``.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QMenu, QMessageBox, QVBoxLayout, QWidget
from qasync import asyncSlot

from app.views.model_items import LocalModelsModel
from app.views.welcome_panel import WelcomePanel
from app.views.widgets import button, table
from app.views.work import Work
from backend.api import Hearth, LibraryModel, human_size

_DELETABLE = frozenset({"library", "file"})  # downloaded files; imported ones leave the list


class DownloadedTab(QWidget):
    model_chosen = Signal(str)  # a model id to load in the chat
    imported = Signal(str)  # the id of the last file an import added

    def __init__(self, hearth: Hearth, work: Work, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self._work = work
        self.local_model = LocalModelsModel(self)
        self.welcome = WelcomePanel(self)
        self.welcome.hide()
        self.welcome.model_chosen.connect(self.model_chosen)
        self.welcome.model_chosen.connect(lambda _id: self.retire_welcome())
        self.welcome.dismissed.connect(self.retire_welcome)
        self._welcome_retired = False
        self.local_table = table("local_table", self.local_model, self)
        self.local_table.setAccessibleName("Models on this computer")
        self.local_table.doubleClicked.connect(lambda _index: self.use_selected())
        self.local_table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.local_table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.local_table.customContextMenuRequested.connect(self._menu)
        self.use_button = button("Use in chat", "use_button", self, self.use_selected)
        self.delete_button = button("Delete…", "delete_button", self, self.delete_selected)
        self.show_button = button("Show in file manager", "show_button", self,
                                  self.show_selected)
        self.import_button = button("Import .gguf…", "import_button", self, self.import_dialog)
        self.import_button.setToolTip("Add GGUF files from this computer (used where they are, "
                                      "not copied). You can also drop them onto this page.")
        buttons = QHBoxLayout()
        for each in (self.use_button, self.delete_button, self.show_button):
            buttons.addWidget(each)
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.welcome)
        layout.addWidget(self.local_table, 1)
        layout.addLayout(buttons)
        self._update_buttons()

    @asyncSlot()
    async def refresh(self) -> None:
        """Re-read the local models (and, while only the starter is here, the best pick)."""
        await self.reload()

    async def reload(self) -> None:
        library = self._hearth.library
        with self._work.running():
            selected = self.selected()
            models = await self._work.off_thread(library.local_models)
            self.local_model.set_rows(models)
            self.select(selected.id if selected else None)
            only_starter = all(m.model.source == "builtin" for m in models)
            # A model already picked once (the saved default) means the first steps are done.
            picked = self._hearth.settings.snapshot().default_model is not None
            if not only_starter or picked:
                self._welcome_retired = True
            self.welcome.setVisible(not self._welcome_retired)
            if not self._welcome_retired and self.welcome.best_pick is None:
                self.welcome.set_best_pick(await self._work.off_thread(library.best_pick))

    @Slot()
    def retire_welcome(self) -> None:
        """The welcome has done its job (a model was picked) or was hidden: for good."""
        self._welcome_retired = True
        self.welcome.hide()

    def selected(self) -> LibraryModel | None:
        rows = self.local_table.selectionModel().selectedRows()
        return self.local_model.row_at(rows[0].row()) if rows else None

    def select(self, model_id: str | None) -> None:
        for i, row in enumerate(self.local_model.rows()):
            if row.id == model_id:
                self.local_table.selectRow(i)
                return
        self._update_buttons()

    def _update_buttons(self) -> None:
        row = self.selected()
        self.use_button.setEnabled(row is not None)
        self.show_button.setEnabled(row is not None)
        self.delete_button.setEnabled(row is not None and row.model.source in _DELETABLE)
        if row is not None and row.model.source == "file":
            self.delete_button.setToolTip("Take it off the list; the file stays where it is.")
        else:
            self.delete_button.setToolTip("Delete the downloaded file from disk.")

    def _menu(self, pos: QPoint) -> None:
        index = self.local_table.indexAt(pos)
        if not index.isValid():
            return
        self.local_table.selectRow(index.row())
        menu = QMenu(self)
        for each in (self.use_button, self.show_button, self.delete_button):
            action = QAction(each.text(), menu)
            action.setEnabled(each.isEnabled())
            action.triggered.connect(each.click)
            menu.addAction(action)
        menu.exec(self.local_table.viewport().mapToGlobal(pos))

    @Slot()
    def use_selected(self) -> None:
        row = self.selected()
        if row is not None:
            self.model_chosen.emit(row.id)

    @Slot()
    def show_selected(self) -> None:
        row = self.selected()
        if row is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(row.model.path.parent)))

    @asyncSlot()
    async def delete_selected(self) -> None:
        row = self.selected()
        if row is None or row.model.source not in _DELETABLE:
            return
        if row.model.source == "file":
            text = (f"Remove {row.id} from Hearth's list?\n\nThe file stays where it is:\n"
                    f"{row.model.path}")
        else:
            text = (f"Delete {row.id}?\n\nThis frees {human_size(row.size_bytes)}; you can "
                    "download it again later.")
        answer = QMessageBox.question(self, "Delete model", text)
        if answer != QMessageBox.StandardButton.Yes:
            return
        with self._work.running():
            self.delete_button.setEnabled(False)
            await self._work.off_thread(self._hearth.library.delete, row.id)
            await self.reload()

    @Slot()
    def import_dialog(self) -> None:
        paths, _filter = QFileDialog.getOpenFileNames(
            self, "Import GGUF models", "", "GGUF models (*.gguf);;All files (*)")
        if paths:
            self.import_paths([Path(p) for p in paths])

    @asyncSlot(list)
    async def import_paths(self, paths: list[Path]) -> None:
        """Import each file, a vision projector paired with the model picked with it (a bad
        file says why and doesn't stop the others)."""
        imported: str | None = None
        with self._work.running():
            self.import_button.setEnabled(False)
            try:
                outcome = await self._work.off_thread(self._hearth.library.import_files,
                                                      paths)
                for problem in outcome.problems:
                    self._work.report(problem)
                if outcome.imported:
                    imported = outcome.imported[-1].id
            finally:
                self.import_button.setEnabled(True)
            await self.reload()
            if imported is not None:
                self.imported.emit(imported)
                self.select(imported)
