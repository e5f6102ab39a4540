"""Failure policies, pure: a Job's ``podFailurePolicy`` (which failed pod fails the Job at
once, is ignored, or counts toward ``backoffLimit``) and a JobSet's ``failurePolicy.rules``
(which failed Job fails or restarts the JobSet), evaluated in rule order as upstream."""

from __future__ import annotations

from typing import Any

from .store import Obj, meta

JOBSET_PREFIX = "jobset.sigs.k8s.io/"


def _exit_code_match(rule: dict[str, Any], pod: Obj) -> str | None:
    requirement = rule["onExitCodes"]
    wanted = requirement.get("containerName")
    values = requirement.get("values") or []
    for status in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated is None or (wanted and status["name"] != wanted):
            continue
        code = terminated.get("exitCode", 0)
        if code == 0:
            continue  # a container that succeeded never matches
        if (code in values) == (requirement["operator"] == "In"):
            return (
                f"Container {status['name']} for pod {meta(pod)['namespace']}/"
                f"{meta(pod)['name']} failed with exit code {code}"
            )
    return None


def _condition_match(rule: dict[str, Any], pod: Obj) -> str | None:
    conditions = pod.get("status", {}).get("conditions") or []
    for pattern in rule["onPodConditions"]:
        for condition in conditions:
            if condition["type"] == pattern["type"] and condition["status"] == pattern.get(
                "status", "True"
            ):
                return (
                    f"Pod {meta(pod)['namespace']}/{meta(pod)['name']} has condition "
                    f"{condition['type']}"
                )
    return None


def pod_failure_action(policy: dict[str, Any] | None, pod: Obj) -> tuple[str, str] | None:
    """(action, message) of the first podFailurePolicy rule a failed pod matches, or None
    (the pod then counts toward backoffLimit)."""
    for index, rule in enumerate((policy or {}).get("rules") or []):
        found = (
            _exit_code_match(rule, pod)
            if "onExitCodes" in rule
            else (_condition_match(rule, pod) if "onPodConditions" in rule else None)
        )
        if found is not None:
            return rule["action"], f"{found} matching {rule['action']} rule at index {index}"
    return None


def _failure_reason(job: Obj) -> str:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition["type"] == "Failed" and condition["status"] == "True":
            return str(condition.get("reason", ""))
    return ""


def jobset_failure_action(policy: dict[str, Any] | None, job: Obj) -> str:
    """The action of the first JobSet failurePolicy rule a failed child Job matches
    (``onJobFailureReasons``, ``targetReplicatedJobs``); RestartJobSet when none does."""
    replicated = (meta(job).get("labels") or {}).get(JOBSET_PREFIX + "replicatedjob-name")
    for rule in (policy or {}).get("rules") or []:
        reasons = rule.get("onJobFailureReasons") or []
        targets = rule.get("targetReplicatedJobs") or []
        if (not reasons or _failure_reason(job) in reasons) and (
            not targets or replicated in targets
        ):
            return str(rule["action"])
    return "RestartJobSet"
