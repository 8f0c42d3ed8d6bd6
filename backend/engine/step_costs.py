"""What a decode step costs, learnt from real steps (engine thread only).

A step's cost is mostly fixed (the weights are read once whatever the batch), so dividing a
mixed step's time by its tokens would overstate a prompt token's cost several times and feed
prompts in crumbs. These running estimates keep the step's base time and what each prompt
token adds on top apart; the scheduler sizes prompt chunks and hand-off waits with them.
"""

from __future__ import annotations

MIN_PREFILL_CHUNK = 4


class StepCosts:
    def __init__(self) -> None:
        self.decode_step = 0.0  # seconds of a step with no prompt tokens in it
        self.per_prompt_token = 0.002  # seconds each prompt token adds to a step
        self._prompt_steps = 0  # steps the prompt speed was learnt from

    def learn(self, elapsed: float, n_generating: int, n_prompt: int, n_draft: int = 0
              ) -> None:
        """Learn the prompt speed from real steps: the marginal cost of a prompt token.
        Drafted tokens (speculation) are priced by the speculator; a step with drafts and no
        prompt teaches nothing here, one with both counts its drafts as prompt tokens."""
        if n_draft and not n_prompt:
            return
        n_prompt += n_draft
        if n_prompt == 0:
            if n_generating:
                self.decode_step = (elapsed if self.decode_step == 0.0 else
                                    0.8 * self.decode_step + 0.2 * elapsed)
            return
        if n_prompt < MIN_PREFILL_CHUNK:
            return
        base = self.decode_step if n_generating else 0.0
        per_token = max(elapsed - base, 0.0) / n_prompt
        per_token = max(per_token, 1e-6)  # a noisy step must not promise infinite room
        # The first steps after a load replace the guess quickly (a GPU reads prompts a
        # hundred times faster than two CPU cores); later ones are smoothed.
        weight = max(0.3, 1.0 / (self._prompt_steps + 1))
        self._prompt_steps += 1
        self.per_prompt_token = (1 - weight) * self.per_prompt_token + weight * per_token
