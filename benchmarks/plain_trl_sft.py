"""The baseline a user would otherwise write: a plain TRL script running the quickstart's SFT stage.

Same data (the curated ``datasets/sft.parquet`` of a run), same start model (the run's tiny base
model), same SFTConfig values as recipes/quickstart.yaml, including the two where TRL's defaults
differ from what the recipe runs (activation checkpointing and bf16, both off on CPU). Usage:
    python benchmarks/plain_trl_sft.py DATA.parquet MODEL_DIR OUT_DIR MAX_STEPS
"""

import json
import sys

import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

data, model_dir, out_dir, max_steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = datasets.Dataset.from_parquet(data)


def to_messages(row):
    if row["kind"] == "chat":
        return {"messages": row["messages"]}
    return {"messages": row["prompt"] + [{"role": "assistant", "content": row["ground_truth"]}]}


train = rows.map(to_messages, remove_columns=rows.column_names)
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
args = SFTConfig(output_dir=out_dir, max_steps=max_steps, learning_rate=3e-3, lr_scheduler_type="cosine",
                 warmup_steps=0.05, per_device_train_batch_size=32, max_length=64, logging_steps=100,
                 assistant_only_loss=True, use_cpu=True, save_strategy="no", report_to=[], seed=0, data_seed=0,
                 dataloader_num_workers=0,
                 # the recipe's values, stated: TRL's SFTConfig defaults differ from TrainingArguments
                 # (activation checkpointing on, bf16 on even on CPU); with them this script took
                 # 129.6 and 157.1 s against 87.7-95.1 s with these values (1,500 quickstart steps)
                 activation_checkpointing=False, bf16=False)
trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
out = trainer.train()
trainer.save_model(out_dir + "/final")
print(json.dumps({"train_loss": out.training_loss, "train_runtime": out.metrics["train_runtime"]}))
