"""The prompts of ``spec_bench.py``: three workloads, three prompts each, and 20 for agreement.

"edit": rename a variable in a ~20-line function and return the whole function (the reply
copies most of the prompt); "quote": quote a paragraph of a given document, then summarise it
(a copy, then new prose); "chat": free writing (nothing to copy).
"""

from __future__ import annotations

FUNCTIONS = (
    '''def compute_totals(orders):
    total = 0
    count = 0
    skipped = []
    for order in orders:
        if order.cancelled:
            skipped.append(order.id)
            continue
        for line in order.lines:
            if line.price <= 0:
                continue
            total += line.price * line.quantity
            count += line.quantity
    if count == 0:
        return 0, 0, skipped
    average = total / count
    report = {"total": total, "count": count, "average": average}
    report["skipped"] = len(skipped)
    return total, average, report
''',
    '''def parse_config(path):
    settings = {}
    errors = []
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                errors.append(f"line {number}: no '=' in {line!r}")
                continue
            key, value = line.split("=", 1)
            key = key.strip().lower()
            value = value.strip()
            if key in settings:
                errors.append(f"line {number}: {key} given twice")
            settings[key] = value
    if errors:
        raise ValueError("; ".join(errors))
    return settings
''',
    '''class Inventory:
    def __init__(self):
        self.items = {}
        self.history = []

    def add(self, name, amount):
        if amount <= 0:
            raise ValueError("amount must be positive")
        self.items[name] = self.items.get(name, 0) + amount
        self.history.append(("add", name, amount))

    def remove(self, name, amount):
        have = self.items.get(name, 0)
        if amount > have:
            raise ValueError(f"only {have} of {name} left")
        self.items[name] = have - amount
        self.history.append(("remove", name, amount))

    def count(self, name):
        return self.items.get(name, 0)
''',
)
RENAMES = (("total", "grand_total"), ("settings", "options"), ("items", "stock"))

DOCUMENTS = (
    """The harbour town of Kelmouth was built on trade in salt and copper. Its stone quays
were laid in the fourteenth century, and the customs house that still stands by the water
was finished in 1612.

In the winter of 1799 a storm broke the old sea wall, and the town council borrowed money
from three merchant families to rebuild it. The new wall was twice as thick and carried a
lamp at its end, which was lit every night until 1953.

Today Kelmouth lives on fishing and visitors. The customs house is a museum, the merchant
houses are hotels, and the lamp on the wall has been restored by volunteers.""",
    """Sourdough bread rises because of a culture of wild yeast and lactic acid bacteria. The
baker keeps the culture alive by feeding it flour and water every day.

To make a loaf, the baker mixes some of the culture with flour, water and salt, lets the
dough rest for several hours, folds it a few times, and shapes it. The shaped dough proves
slowly, often overnight in a cool room, which gives the bread its sour taste.

The loaf is baked in a very hot oven, first covered so that steam keeps the crust soft
while the bread expands, then uncovered so that the crust turns dark and crisp.""",
    """The observatory on Mount Arden opened in 1931 with a single telescope bought from a
university that no longer needed it. For twenty years two astronomers shared it, working
alternate nights.

In 1954 a larger telescope was added, paid for by a public appeal in which schoolchildren
collected coins in jars. The new instrument found four comets in its first decade, one of
which is named after the school that raised the most money.

The observatory now runs open evenings every Friday, when anyone may look through the old
telescope, which still works after almost a century.""",
)

CHATS = (
    "Write a story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle gear system works to a ten-year-old.",
    "Describe a walk through a busy market on a spring morning.",
)


def edit_prompt(i: int) -> str:
    old, new = RENAMES[i % len(RENAMES)]
    return (f"Rename the variable `{old}` to `{new}` in the following code and return the "
            f"whole code, changed, and nothing else.\n\n```python\n{FUNCTIONS[i % 3]}```")


def quote_prompt(i: int) -> str:
    return ("Here is a document.\n\n" + DOCUMENTS[i % 3] + "\n\nQuote the second paragraph "
            "of the document word for word, then summarise the whole document in two "
            "sentences.")


WORKLOADS = {
    "edit": [edit_prompt(i) for i in range(3)],
    "quote": [quote_prompt(i) for i in range(3)],
    "chat": list(CHATS),
}

MORE_CHATS = (
    "Write a short poem about autumn leaves.",
    "What are three tips for learning a new language?",
    "Tell me about the history of the printing press.",
    "Write a letter to a friend about a trip to the mountains.",
    "Explain why the sky is blue.",
)


def agreement_prompts() -> list[str]:
    """20 prompts: the nine above, the edit task with swapped renames, the quote task asking
    for the first paragraph, and five more chats."""
    edits = [(f"Rename the variable `{RENAMES[(i + 1) % 3][0]}` to "
              f"`{RENAMES[(i + 1) % 3][1]}` in the following code and return the whole code."
              f"\n\n```python\n{FUNCTIONS[(i + 1) % 3]}```") for i in range(3)]
    quotes = [("Here is a document.\n\n" + DOCUMENTS[i] + "\n\nQuote the first paragraph "
               "of the document exactly.") for i in range(3)]
    return [*WORKLOADS["edit"], *WORKLOADS["quote"], *WORKLOADS["chat"], *edits, *quotes,
            *MORE_CHATS, "List the days of the week in French."][:20]
