"""``KnowledgeSettings``: how documents are read into chats (a section of ``Settings``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class KnowledgeSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    embedding_model: str | None = Field(
        None, description="The model that turns passages into vectors for search by meaning; "
        "empty: the first downloaded of the catalog's embedding models (nomic-embed-text, "
        "bge-m3, all-minilm) or any embedding model in your folders. Without one, documents "
        "are searched by their words only.")
    passages: int = Field(5, ge=1, le=50, description="Passages given to the model for each "
                          "question.")
    whole_documents: bool = Field(True, description="Give an attached document whole when it "
                                  "fits the context with room left to answer.")
    answer_room_tokens: int = Field(1024, ge=64, le=1 << 20, description="Context kept free "
                                    "for the answer when documents are added to a question.")
    rescan_minutes: float = Field(5.0, ge=0.5, le=24 * 60, description="How often the "
                                  "library's folders are checked for new, changed and deleted "
                                  "files.")
