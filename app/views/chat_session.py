"""Which chat the page shows, and what that chat keeps in the history: its model and prompt.

A chat's model and system prompt are stored with it, so editing the prompt changes this chat
only and reopening a chat brings both back. A new chat starts with the default prompt (the
settings', which a preset sets); it is stored when the chat is, with the first message. A
chat written before chats had their own prompt (history v1) takes the default the first time
it is opened, and keeps it from then on.

Threading contract: GUI thread only; the store calls are millisecond-scale SQLite writes.
"""

from __future__ import annotations

from backend.api import ChatStore, Conversation, Hearth, StoredMessage


class ChatSession:
    def __init__(self, hearth: Hearth) -> None:
        self._hearth = hearth
        self.store: ChatStore = hearth.history
        self.conversation_id: int | None = None
        self._new_chat_prompt: str | None = None  # an unsaved chat's prompt (None: default)

    def default_prompt(self) -> str:
        return self._hearth.settings.snapshot().chat.system_prompt

    def system_prompt(self) -> str:
        """The shown chat's instructions (a new chat's: what was typed for it, or the
        default). Raises ``BackendError`` if the chat was deleted meanwhile."""
        if self.conversation_id is not None:
            prompt = self.store.conversation(self.conversation_id).system_prompt
            return self.default_prompt() if prompt is None else prompt
        return self.default_prompt() if self._new_chat_prompt is None else self._new_chat_prompt

    def set_system_prompt(self, text: str) -> None:
        """The shown chat's instructions from now on (only its)."""
        if self.conversation_id is None:
            self._new_chat_prompt = text
        else:
            self.store.set_system_prompt(self.conversation_id, text)

    def remember_model(self, model: str | None) -> None:
        """The shown chat answers with ``model`` from now on."""
        if self.conversation_id is not None and model is not None:
            self.store.set_model(self.conversation_id, model)

    def start_new(self) -> None:
        self.conversation_id = None
        self._new_chat_prompt = None

    def open(self, conversation_id: int) -> tuple[Conversation, list[StoredMessage]]:
        """Read a chat to show it (raises ``BackendError`` if it is gone); it is the shown
        one from now on."""
        conversation = self.store.conversation(conversation_id)
        messages = self.store.messages(conversation_id)
        if conversation.system_prompt is None:  # written before chats had their own
            self.store.set_system_prompt(conversation_id, self.default_prompt())
        self.conversation_id = conversation_id
        return conversation, messages

    def ensure(self, model: str | None) -> int:
        """The shown chat's id, storing it first if it is new (with its model and prompt)."""
        if self.conversation_id is None:
            self.conversation_id = self.store.create_conversation(
                model, system_prompt=self.system_prompt()).id
            self._new_chat_prompt = None
        return self.conversation_id

