"""NeuraLadder: turn verifiable multimodal QA into a progressive curriculum (docs/method.md §2).

Stages, each ``items -> items`` and recorded in ``stats.json`` with counts and reasons for every drop:

    ingest -> verifiable filter -> easy filter -> rating (k samples) -> prune -> [review] -> sort + mix

    observe-r1 ladder build --source a.jsonl --source b.parquet --model M --k 8 --out ladder/
    observe-r1 ladder mix ladder/ --size 20000 --out ladder/train.jsonl
    observe-r1 ladder stats ladder/
"""
