"""LLaVA-NeXT's other chat templates, as the llava-hf checkpoints render them (the tiny checkpoint has the Vicuna
one): for the family's template tests and the fine-tuning labels."""

MISTRAL = (  # llava-hf/llava-v1.6-mistral-7b-hf's rendering: no generation prompt, "[/INST]" asks for the answer
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{{ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'][0]['text'] + '</s> ' }}"
    "{% endif %}{% endfor %}"
)
LLAMA_3 = (  # llava-hf/llama3-llava-next-8b-hf's rendering, its begin-of-text as the tiny tokenizer's <s>
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + '<|eot_id|>' }}"
    "{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)
