"""Drives the API with the official openai Python SDK, unmodified but for base_url.

Prints one JSON object describing what each call returned; the TypeScript test asserts on it.
"""
import io
import json
import os
import sys
import time

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["API_BASE_URL"], api_key=os.environ["API_KEY"], max_retries=0)
model = os.environ["MODEL"]
report = {"sdk_version": openai.__version__}

lines = [
    json.dumps({"custom_id": f"py-{i}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": model, "messages": [{"role": "user", "content": f"hello {i}"}], "max_tokens": 8}})
    for i in range(12)
]
uploaded = client.files.create(file=("requests.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch")
report["file"] = {"id": uploaded.id, "purpose": uploaded.purpose, "bytes": uploaded.bytes, "status": uploaded.status}
report["file_retrieved_same"] = client.files.retrieve(uploaded.id).id == uploaded.id
report["wait_for_processing"] = client.files.wait_for_processing(uploaded.id).status

batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                              completion_window="24h", metadata={"sdk": "python"})
report["created_status"] = batch.status
deadline = time.time() + 60
while batch.status not in ("completed", "failed", "expired", "cancelled") and time.time() < deadline:
    time.sleep(0.2)
    batch = client.batches.retrieve(batch.id)
report["batch"] = {
    "status": batch.status,
    "counts": batch.request_counts.model_dump(),
    "metadata": batch.metadata,
    "model": batch.model,
    "has_usage": batch.usage is not None and batch.usage.total_tokens > 0,
}
output = client.files.content(batch.output_file_id).text
report["output_custom_ids"] = [json.loads(line)["custom_id"] for line in output.strip().split("\n")]

# Iterating a page fetches the following pages: this exercises the cursor.
report["batches_listed"] = [b.id for b in client.batches.list(limit=5)]
report["files_listed"] = [f.id for f in client.files.list(purpose="batch", limit=2)]
report["models"] = [m.id for m in client.models.list()]

try:
    client.batches.cancel(batch.id)
    report["cancel_finished"] = "no error"
except openai.ConflictError as err:
    report["cancel_finished"] = {"status": err.status_code, "code": err.code}

try:
    client.batches.retrieve("batch_does_not_exist")
except openai.NotFoundError as err:
    report["not_found"] = {"status": err.status_code, "type": err.body.get("type") if isinstance(err.body, dict) else None}

try:
    OpenAI(base_url=os.environ["API_BASE_URL"], api_key="sk-wrong", max_retries=0).models.list()
except openai.AuthenticationError as err:
    report["bad_key"] = err.status_code

deleted = client.files.delete(uploaded.id)
report["deleted"] = deleted.deleted

json.dump(report, sys.stdout)
