"""Choosing the model to chat with: the picker's rows, loading a local model, a connection's.

The chooser drives the model bar (picker, load progress, the planner's verdict). A load is one
awaited ``Hearth.load``; its progress and the planner's summary arrive on ``load_events``,
which also report loads an API client caused (JIT) and models unloaded when idle, so the bar
shows those the same way. Connections' models are asked for with ``remote_models()``; each
connection's answer (its models, or why not) arrives on ``remote_events`` and becomes its
rows, the last answer standing until the next.

The picker shows the model of the chat on screen (``show_choice`` when another chat opens):
picking a row loads it at once unless a reply is streaming (then it loads with the next
message); a reply loads its chat's model first when it isn't the loaded one
(``ensure_loaded``), or loads it again when its load settings changed.

Threading contract: GUI thread only; loads and listings are awaited in qasync tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from qasync import asyncSlot

from app.streams import StreamReader
from app.views.model_bar import ModelBar
from backend.api import (
    Hearth,
    LoadedModel,
    LoadEvent,
    LoadFailed,
    LoadFinished,
    LoadPlan,
    LoadProgressed,
    LoadStarted,
    RemoteStatus,
    Unloaded,
)
from backend.errors import BackendError

if TYPE_CHECKING:
    from backend.api import LocalModel


def display_name(model: LocalModel) -> str:
    """A model's name for sentences ("Loading SmolLM2 135M Instruct…"): its description's
    name part when it has a short one, else its id."""
    name = model.description.split(" (")[0].split(",")[0].strip()
    return name if name and len(name) <= 40 else model.id


class ModelChooser(QObject):
    loaded = Signal(object)  # LoadedModel, after a load the window asked for
    hosted_changed = Signal(object)  # LoadedModel | None: what the chat now uses, whoever
    # loaded it (an API client's JIT load, the idle unload)
    remote_chosen = Signal(str)
    remote_listed = Signal(list)  # ids of connections' models now in the picker
    problem = Signal(str)
    changed = Signal()  # a load started or ended, or another model was chosen
    load_progressed = Signal(str, float)  # model id, fraction of its weights read

    def __init__(self, hearth: Hearth, bar: ModelBar, replying: Callable[[], bool],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._hearth = hearth
        self.bar = bar
        self._replying = replying
        self.loading: str | None = None  # the model a load the window asked for is reading
        self._loads = 0  # loads the window asked for, in flight (replies may each ask)
        self._names: dict[str, str] = {}  # model id -> display name
        self.vision: dict[str, str] = {}  # local models that can see images: id -> name
        # A connection's model ("<connection>/<model>") chosen in the picker: replies stream
        # from that server and nothing is loaded locally.
        self.remote_model: str | None = None
        self._summaries: dict[str, str] = {}  # the planner's sentence per model id
        self._remote: dict[str, RemoteStatus] = {}  # each connection's last answer
        bar.picker.activated.connect(self.picked)
        self._streams = StreamReader(self)
        self._streams.read(hearth.load_events.stream, self._on_load_event)
        self._streams.read(hearth.remote_events.stream, self._on_remote_status)

    def shutdown(self) -> None:
        self._streams.close()

    # -- the picker ------------------------------------------------------------------------
    def refresh(self) -> None:
        """Fill the picker from the library (a folder scan: a few ms); connections keep their
        last rows until their servers answer again."""
        loaded = self._hearth.loaded
        picked = self.choice()  # the shown chat's choice stays, if it is still there
        try:
            found = self._hearth.models()
        except BackendError as exc:
            self.problem.emit(exc.user_message)
            found = []
        models = [model.id for model in found]
        self._names = {model.id: display_name(model) for model in found}
        # Models paired with a vision projector: marked in the picker, and named when images
        # are attached while a text-only model is picked.
        self.vision = {model.id: self._names[model.id] for model in found
                       if model.mmproj is not None}
        current = self.remote_model or (picked if picked in models else None) or (
            loaded.model_id if loaded else None)
        self.bar.set_local(models, current, vision=set(self.vision))
        names = [conn.name for conn in self._hearth.settings.snapshot().connections]
        self._remote = {name: self._remote[name] for name in names if name in self._remote}
        self.bar.set_remote(self._ordered(names), current)
        if names:
            self._list_remote()

    @asyncSlot()
    async def _list_remote(self) -> None:
        await self._hearth.remote_models()  # each answer arrives on remote_events

    def _on_remote_status(self, status: RemoteStatus) -> None:
        """A connection answered (a listing, or a test of a saved one): its rows follow."""
        names = [conn.name for conn in self._hearth.settings.snapshot().connections]
        if status.name not in names:
            return  # a connection tried out in the dialog and not saved
        self._remote[status.name] = status
        self.bar.set_remote(self._ordered(names), self.remote_model)
        self.remote_listed.emit(sorted(self.bar.remote_ids))

    def _ordered(self, names: list[str]) -> list[RemoteStatus]:
        """The connections' last answers, in the order the settings list them."""
        return [self._remote[name] for name in names if name in self._remote]

    def display_name(self, model_id: str | None) -> str:
        return self._names.get(model_id or "", model_id or "")

    def choice(self) -> str | None:
        """The model the shown chat talks to: a connection's, else the picked local one."""
        if self.remote_model is not None:
            return self.remote_model
        name = self.bar.picker.currentData()
        return name if isinstance(name, str) and name not in self.bar.remote_ids else None

    def show_choice(self, model_id: str | None) -> bool:
        """Show ``model_id`` as the choice (a chat opened), loading nothing; False when it is
        no longer available (the picker keeps its row)."""
        if not model_id:
            return False
        if self._hearth.is_remote(model_id):
            index = self.bar.picker.findData(model_id)
            if index >= 0:
                self.bar.picker.setCurrentIndex(index)
            self.remote_model = model_id
            self._show_remote(model_id)
            self.changed.emit()
            return True
        index = self.bar.picker.findData(model_id)
        if index < 0:
            return False
        self.remote_model = None
        self.bar.picker.setCurrentIndex(index)
        self._show_choice_state()
        self.changed.emit()
        return True

    def _show_choice_state(self) -> None:
        """The bar's sentence for the local choice: how it loaded, or that it loads on Send."""
        name = self.choice()
        loaded = self._hearth.loaded
        if loaded is not None and loaded.model_id == name:
            self._show_loaded(loaded)
        elif name is not None and self.loading is None:
            self.bar.show_verdict(f"{self.display_name(name)} loads when you send",
                                  "The model is loaded with your first message.")

    def picked(self, index: int) -> None:
        name = self.bar.picker.itemData(index)
        if not name:
            return
        if name in self.bar.remote_ids:
            self.use_remote(name)
            return
        loaded = self._hearth.loaded
        if loaded is None or loaded.model_id != name or self.remote_model is not None:
            self.remote_model = None
            if (loaded is not None and loaded.model_id == name) or self._replying():
                self._show_choice_state()  # a reply streams: it loads with the next message
                self.changed.emit()
            else:
                self._load_picked(name)

    @asyncSlot(str)
    async def _load_picked(self, name: str) -> None:
        await self.load(name)

    def use_remote(self, model_id: str) -> None:
        """Chat through a connection's model from now on (no local load)."""
        self.remote_model = model_id
        self._show_remote(model_id)
        self.changed.emit()
        self.remote_chosen.emit(model_id)

    def _show_remote(self, model_id: str) -> None:
        connection = model_id.partition("/")[0]
        try:
            url = self._hearth.remote.connection(connection).base_url
        except BackendError:
            url = connection
        self.bar.show_verdict(f"Remote: {connection} at {url}",
                              f"Replies stream from {url}; nothing runs locally.")

    # -- loading ---------------------------------------------------------------------------
    async def load(self, name: str, plan: LoadPlan | None = None) -> None:
        """Load ``name`` now (picked, or asked for by the window): the shown chat talks to it
        from now on. A failure is said."""
        self.remote_model = None
        index = self.bar.picker.findData(name)
        if index < 0:  # just downloaded: the picker hasn't listed it yet
            self.refresh()
            index = self.bar.picker.findData(name)
        if index >= 0:
            self.bar.picker.setCurrentIndex(index)
        try:
            await self.ensure_loaded(name, plan)
        except BackendError as exc:
            self.problem.emit(exc.user_message)

    async def ensure_loaded(self, name: str, plan: LoadPlan | None = None, *,
                            reload: bool = False) -> None:
        """Load ``name`` (again, with ``reload``), showing it in the bar; raises the
        ``BackendError`` (the caller says it, once). Waits for replies on another model."""
        self.loading = name
        self._loads += 1
        self.bar.show_loading(self.display_name(name))
        self.changed.emit()
        try:
            loaded = await self._hearth.load(name, plan, reload=reload)
        except BackendError as exc:
            self.bar.show_verdict(f"Couldn't load {name}", exc.user_message)
            self.refresh()
            raise
        finally:
            self._loads -= 1
            if not self._loads:
                self.bar.progress.hide()
                self.loading = None
            self.changed.emit()
        self.refresh()
        self._show_choice_state()  # the loaded model's verdict, if it is the shown chat's
        self.loaded.emit(loaded)

    def _show_loaded(self, loaded: LoadedModel) -> None:
        # The summary comes with LoadFinished, which may land just after the load returns.
        summary = self._summaries.get(loaded.model_id) or (
            f"{loaded.n_gpu_layers}/{loaded.n_layer} layers on the GPU")
        self.bar.show_verdict(summary, f"{loaded.path}\n{summary}")

    def _on_load_event(self, event: LoadEvent) -> None:
        ours = self.loading is not None
        local = self.remote_model is None  # the bar shows the local model, not a connection
        if isinstance(event, LoadStarted):
            if not ours and local:  # an API client's JIT load
                self.bar.show_loading(event.model_id)
        elif isinstance(event, LoadProgressed):
            if ours or local:
                self.bar.show_progress(event.fraction)
            self.load_progressed.emit(event.model_id, event.fraction)
        elif isinstance(event, LoadFinished):
            self._summaries[event.model_id] = event.summary
            if local:
                if self.choice() in (None, event.model_id):
                    self._show_loaded(event.info)
                else:  # another chat's model: the shown chat's loads with its next message
                    self._show_choice_state()
                self.hosted_changed.emit(event.info)
            if not ours and self.bar.picker.currentData() != event.model_id:
                self.refresh()  # someone else's load: the picker names what is loaded now
            self.changed.emit()
        elif isinstance(event, LoadFailed):
            if not ours and local:
                self.bar.show_verdict(f"Couldn't load {event.model_id}",
                                      event.error.user_message)
        elif isinstance(event, Unloaded):
            if not ours and local:
                self.bar.show_verdict(f"{event.model_id} was unloaded",
                                      "It was idle (or an API client unloaded it); pick it "
                                      "to load it again.")
                self.hosted_changed.emit(None)
            self.changed.emit()
