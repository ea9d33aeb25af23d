"""Broken rule files, one per row: each gets its exact message at its exact line and column from ``rules check``.

The first rows are the typos that used to pass ``rules check`` and misbehave at run time (issue 18's table); then
every static check, the warnings (``--strict`` makes them fail), and what the loader refuses outright. A row's
expected position is where its ``marker`` text starts in the file, so the rows read as the files they check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.ops.cli import main

WS = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mlops/providers/"
      "Microsoft.MachineLearningServices/workspaces/mlw-prod")
HEAD = f"""allowed_workspaces: [{WS}]
channels:
  ops: {{type: teams, url_setting: TEAMS_OPS_URL}}
rules:
"""
LEGACY_URL = "https://contoso.webhook.office.com/webhookb2/1111/IncomingWebhook/2222/3333"


@dataclass(frozen=True)
class Row:
    name: str
    rules: str  # YAML under ``rules:``
    marker: str  # where the finding points: the first occurrence of this text
    message: str  # everything after ``file:line:column: ``
    exit: int = 1
    strict_exit: int = 1


ROWS = [
    # issue 18's table: each of these passed rules check before ------------------------------------------------
    Row("template path typo", """  - name: tag-new
    on: ModelRegistered
    do:
      - tag_model: {set: {source: "{{ model.idd }}"}}
""", 'source: "{{ model.idd', "error: rule 'tag-new': do[0].tag_model.set.source: {{ model.idd }}: ModelRegistered "
        "events have no model.idd — did you mean 'model.id'?"),
    Row("template root typo", """  - name: tag-new
    on: ModelRegistered
    do:
      - tag_model: {set: {source: "{{ modle.id }}"}}
""", 'source: "{{ modle', "error: rule 'tag-new': do[0].tag_model.set.source: {{ modle.id }}: ModelRegistered "
        "events have no modle.id — did you mean 'model.id'?"),
    Row("a path of another event kind", """  - name: tag-new
    on: ModelRegistered
    do:
      - tag_model:
          set:
            run: "{{ run.id }}"
""", 'run: "{{ run.id', "error: rule 'tag-new': do[0].tag_model.set.run: {{ run.id }}: ModelRegistered events "
        "have no run.id"),
    Row("unclosed placeholder", """  - name: retrain
    on: ModelMonitorSignal
    do:
      - run_pipeline:
          job_yaml: pipelines/retrain.yml
          display_name: "retrain {{ monitor.name }"
""", "display_name:", "error: rule 'retrain': do[0].run_pipeline.display_name: unclosed placeholder "
        "'{{ monitor.name }': close it with '}}'"),
    Row("if on a misspelt result field", """  - name: gate
    on: RunCompleted
    do:
      - quality_gate: {metrics: {auc: {min: 0.8}}}
      - queue_release: {id: release, if: gate.pased, project: mlops, pipeline_id: 42, environment: production}
""", "if: gate.pased", "error: rule 'gate': do[1].queue_release.if: 'gate.pased': the result of quality_gate (gate) "
        "has no 'pased' — did you mean 'gate.passed'?"),
    Row("group_by typo", """  - name: retrain
    on: ModelMonitorSignal
    throttle: {once_within: 6h, group_by: [monitor.nmae]}
    do:
      - run_pipeline: {job_yaml: pipelines/retrain.yml}
""", "monitor.nmae", "error: rule 'retrain': throttle.group_by[0]: 'monitor.nmae': ModelMonitorSignal events have "
        "no monitor.nmae — did you mean 'monitor.name'? (a missing value is empty: every event would share one "
        "window)"),
    Row("two on: keys in one rule", """  - name: tag-new
    on: RunCompleted
    on: ModelRegistered
    do:
      - tag_model: {set: {a: b}}
""", "on: ModelRegistered", "error: duplicate key 'on' (first given at line 6)"),
    Row("job_yaml that does not exist", """  - name: retrain
    on: ModelMonitorSignal
    do:
      - run_pipeline: {job_yaml: pipelines/retrainx.yml}
""", "job_yaml", "error: rule 'retrain': do[0].run_pipeline.job_yaml: 'pipelines/retrainx.yml' does not exist "
        "(relative to {dir}) — did you mean 'pipelines/retrain.yml'?"),
    # the other static checks -------------------------------------------------------------------------------------
    Row("unknown filter", """  - name: tag-new
    on: ModelRegistered
    do:
      - tag_model: {set: {a: "{{ model.name | lowr }}"}}
""", 'a: "', "error: rule 'tag-new': do[0].tag_model.set.a: unknown filter 'lowr' in '{{ model.name | lowr }}' "
        "— did you mean 'lower'?"),
    Row("stray closing braces", """  - name: tag-new
    on: ModelRegistered
    do:
      - tag_model: {set: {a: "model.name }}"}}
""", 'a: "', "error: rule 'tag-new': do[0].tag_model.set.a: stray '}}' in 'model.name }}': no '{{' opens it"),
    Row("not a placeholder", """  - name: tag-new
    on: ModelRegistered
    do:
      - tag_model: {set: {a: "{{ 7*7 }}"}}
""", 'a: "', "error: rule 'tag-new': do[0].tag_model.set.a: '{{ 7*7 }}' is not a placeholder: use "
        "{{ path.to.value }} or {{ path | filter }}"),
    Row("once_per on a path one of the kinds lacks", """  - name: retrain
    on: [DatasetDriftDetected, ModelMonitorSignal]
    once_per: [drift.coefficient]
    do:
      - run_pipeline: {job_yaml: pipelines/retrain.yml}
""", "drift.coefficient]", "error: rule 'retrain': once_per[0]: 'drift.coefficient': ModelMonitorSignal events have "
        "no drift.coefficient (the rule is on DatasetDriftDetected, ModelMonitorSignal): add '| optional' or split "
        "the rule (a missing value is empty: every event would share one window)"),
    Row("when on a field the kind lacks", """  - name: tag-new
    on: ModelRegistered
    when: {run_status: [Failed]}
    do:
      - tag_model: {set: {a: b}}
""", "run_status", "error: rule 'tag-new': when.run_status: ModelRegistered events have no run.status: this "
        "criterion never holds for them"),
    Row("an earlier result's field that does not exist", """  - name: gate
    on: RunCompleted
    do:
      - queue_release: {id: release, project: mlops, pipeline_id: 42, environment: production, model: m, version: "1"}
      - notify: {channels: [ops], text: "{{ release.urll }}"}
""", "text:", "error: rule 'gate': do[1].notify.text: {{ release.urll }}: the result of queue_release (release) "
        "has no 'urll' — did you mean 'release.url'?"),
    Row("a later action's result", """  - name: gate
    on: RunCompleted
    do:
      - notify: {channels: [ops], text: "{{ release.url }}"}
      - queue_release: {id: release, project: mlops, pipeline_id: 42, environment: production, model: m, version: "1"}
""", "text:", "error: rule 'gate': do[0].notify.text: {{ release.url }}: 'release' is the result of do[1], which "
        "runs later: only earlier results can be used"),
    Row("a default template the kind cannot fill", """  - name: tag-run
    on: RunCompleted
    do:
      - tag_model: {set: {a: b}}
""", "tag_model:", "error: rule 'tag-run': do[0].tag_model.model: not set, and its default '{{ model.name }}' needs "
        "model.name, which RunCompleted events do not have: set model"),
    Row("a job_yaml outside the rules folder", """  - name: retrain
    on: ModelMonitorSignal
    do:
      - run_pipeline: {job_yaml: ../elsewhere.yml}
""", "job_yaml", "error: rule 'retrain': do[0].run_pipeline.job_yaml: '../elsewhere.yml' leaves the rules file's "
        "folder {dir}"),
    Row("a local component that does not exist", """  - name: retrain
    on: ModelMonitorSignal
    do:
      - run_pipeline: {job_yaml: pipelines/local.yml}
""", "job_yaml", "error: rule 'retrain': do[0].run_pipeline.job_yaml: 'pipelines/local.yml': jobs.train.component "
        "'./components/train.yml' does not exist (relative to {dir}/pipelines)"),
    # warnings: exit 0, or 1 with --strict ---------------------------------------------------------------------
    Row("a legacy Office 365 connector URL", """  - name: tag-new
    on: ModelRegistered
    do:
      - tag_model: {set: {a: b}}
""", "url_setting", "warning: channels.ops.url_setting: TEAMS_OPS_URL holds a legacy Office 365 connector URL "
        "(…webhook.office.com/webhookb2/…); Microsoft retired these connectors in Teams: create a Workflows webhook "
        "and put its URL in the setting", exit=0),
    Row("a drift notify neither throttled nor digested", """  - name: drift
    on: ModelMonitorSignal
    throttle: {once_within: 6h, group_by: [monitor.name]}
    do:
      - notify: {channels: [ops], message: drift_detected}
""", "notify:", "warning: rule 'drift': do[0].notify: one message per drift (16,000 monitors → 16,000 messages): "
        "set throttle_key (e.g. \"{{ workspace.name }}\") and throttle_window to fold repeats into a digest", exit=0),
    Row("a run-failure notify neither throttled nor digested", """  - name: failed
    on: RunStatusChanged
    when: {run_status: [Failed]}
    do:
      - notify: {channels: [ops], message: run_failed}
""", "notify:", "warning: rule 'failed': do[0].notify: one message per run failure: set throttle_key (e.g. "
        "\"{{ workspace.name }}\") and throttle_window to fold repeats into a digest", exit=0),
    Row("a publish_event after what it reports, without an if", """  - name: retrain
    on: ModelMonitorSignal
    do:
      - run_pipeline: {id: retrain, job_yaml: pipelines/retrain.yml}
      - publish_event: {type: mlreactor.RetrainStarted}
""", "publish_event:", "warning: rule 'retrain': do[1].publish_event: mlreactor.RetrainStarted follows "
        "do[0].run_pipeline without an if: it is published even when that action did not happen (if: retrain.job)",
        exit=0),
    # what the loader refuses ----------------------------------------------------------------------------------
    Row("YAML that does not parse names the file", """  - name: x
    on: [ModelRegistered
""", "", "error: not valid YAML: while parsing a flow sequence expected ',' or ']', but got '<stream end>'"),
    Row("a duplicate key deep inside", """  - name: tag-new
    on: ModelRegistered
    do:
      - tag_model:
          set:
            mlreactor.stage: candidate
            mlreactor.stage: champion
""", "mlreactor.stage: champion", "error: duplicate key 'mlreactor.stage' (first given at line 10)"),
    Row("a whole-rule check has no (top): prefix", """  - name: r
    on: ModelRegistered
    throttle: {once_within: 6h, group_by: ["model name"]}
    do:
      - tag_model: {set: {a: b}}
""", "group_by", "error: rule 'r': throttle.group_by: 'model name' is not a dotted path like monitor.name"),
    Row("a duration too long to be one", """  - name: r
    on: ModelRegistered
    throttle: {once_within: 99999999999999999999d}
    do:
      - tag_model: {set: {a: b}}
""", "once_within", "error: rule 'r': throttle.once_within: '99999999999999999999d' is too long a duration"),
    Row("a window beyond a year", """  - name: r
    on: ModelRegistered
    throttle: {once_within: 400d}
    do:
      - tag_model: {set: {a: b}}
""", "once_within", "error: rule 'r': throttle.once_within: '400d' is out of range: use 1s to 366d"),
    Row("a notify digest window of zero", """  - name: r
    on: ModelRegistered
    do:
      - notify: {channels: [ops], throttle_key: x, throttle_window: 0s}
""", "throttle_window", "error: rule 'r': do[0].notify.throttle_window: '0s' is out of range: use 1s to 31d"),
    Row("a threshold that is not a number", """  - name: r
    on: DatasetDriftDetected
    when: {drift_coefficient_above: .nan}
    do:
      - tag_model: {set: {a: b}}
""", ".nan", "error: '.nan' is not a finite number"),
    Row("a YAML tag that builds Python objects", """  - name: !!python/object:os.system r
    on: ModelRegistered
""", "!!python", "error: the tag 'tag:yaml.org,2002:python/object:os.system' is not allowed in a rules file"),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "pipelines" / "components").mkdir(parents=True)
    (tmp_path / "pipelines" / "retrain.yml").write_text("type: pipeline\njobs: {}\n")
    local = "type: pipeline\njobs:\n  train: {component: ./components/train.yml}\n"
    (tmp_path / "pipelines" / "local.yml").write_text(local)
    return tmp_path


def rules_check(capsys: pytest.CaptureFixture[str], path: Path, *flags: str) -> tuple[int, list[str]]:
    code = main(["rules", "check", *flags, str(path)])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if not line.startswith("mlreactor:") and line.startswith(str(path))]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_each_broken_file_gets_its_message_at_its_line(
    row: Row, folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAMS_OPS_URL", LEGACY_URL if "Office 365" in row.name else "https://prod.logic.azure.com/x")
    text = HEAD + row.rules
    path = folder / "reactions.yaml"
    path.write_text(text)
    where = _position(text, row.marker)
    code, lines = rules_check(capsys, path)
    expected = f"{path}:{where}: {row.message.replace('{dir}', str(folder.resolve()))}"
    assert expected in lines, "\n".join(lines)
    assert code == row.exit
    code, _ = rules_check(capsys, path, "--strict")
    assert code == row.strict_exit


def _position(text: str, marker: str) -> str:
    if not marker:  # the end of the file
        lines = text.splitlines()
        return f"{len(lines) + 1}:1"
    offset = text.index(marker)
    line = text.count("\n", 0, offset) + 1
    return f"{line}:{offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"
