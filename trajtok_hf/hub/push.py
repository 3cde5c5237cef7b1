"""Upload of a validated folder: one ``create_commit`` with the selected files and the card as ``README.md``; a
failure raises :class:`PushError` naming the step (repository creation, LFS upload, commit, ...) that failed."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PushError
from .validation import FolderReport

__all__ = ["PushResult", "push_folder"]


@dataclass
class PushResult:
    """What :func:`push_folder` committed: the repository, branch and commit, the files in the commit (the card as
    ``README.md`` last) and the folder's files that were left out, with the reason."""

    repo_id: str
    revision: str
    commit_url: str
    commit_oid: str
    files: list[str]
    skipped: list[tuple[str, str]]


_STEP_BY_URL = (
    ("/api/repos/create", "creating the repository"),
    ("/branch/", "creating the branch"),
    ("/api/validate-yaml", "validating the model card metadata on the Hub"),
    ("/preupload/", "asking the Hub how to upload each file (preupload)"),
    ("/info/lfs/objects/batch", "requesting LFS upload URLs"),
    ("/commit/", "creating the commit"),
)


def _describe_failure(error: BaseException, default_step: str) -> str:
    """'<step> (HTTP <status>): <error>', the step read from the failed request's URL when there is one."""
    step = default_step
    response = getattr(error, "response", None)
    url = str(getattr(getattr(response, "request", None), "url", "") or "")
    for fragment, description in _STEP_BY_URL:
        if fragment in url:
            step = description
            break
    else:
        if "Error while uploading" in str(error):
            step = "uploading a large file (LFS)"
        elif "Invalid metadata in README.md" in str(error):
            step = "validating the model card metadata on the Hub"
    status = getattr(response, "status_code", None)
    cause = f"{type(error).__name__}: {error}"
    if error.__cause__ is not None and str(error.__cause__) not in cause:
        cause += f" (caused by {type(error.__cause__).__name__}: {error.__cause__})"
    return f"{step}{f' (HTTP {status})' if status else ''}: {cause}"


def push_folder(
    report: FolderReport,
    repo_id: str,
    card,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> PushResult:
    """Upload a validated folder's files (:func:`select_files`, read from ``report.upload_folder``: the folder, or
    its staged copy with the remote code of the installed package) and ``card`` as README.md in one commit.

    The folder is only read. Raises :class:`PushError` naming the step that failed; a failure before the commit
    leaves the repository as it was (the Hub commit is atomic), a failure at the commit may leave uploaded LFS
    objects that no commit references."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=endpoint, token=token)
    where = f"{api.endpoint}/{repo_id}"
    untouched = f"The local folder {report.folder} was only read and is unchanged."
    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
        repo_id = repo_url.repo_id
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    except Exception as error:  # noqa: BLE001
        raise PushError(
            f"push to {where} failed while {_describe_failure(error, 'creating the repository')}. {untouched}"
        ) from error

    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(report.upload_folder / name)) for name in report.files
    ]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8")))
    message = commit_message or f"Upload {report.model_class} ({report.model_type}) with trajtok_hf"
    try:
        commit = api.create_commit(repo_id, operations, commit_message=message, revision=revision)
    except Exception as error:  # noqa: BLE001
        raise PushError(
            f"push to {where} failed while {_describe_failure(error, 'uploading the files')}. No commit was made "
            f"(uploaded large files, if any, are not referenced by any commit). {untouched}"
        ) from error
    return PushResult(
        repo_id=repo_id,
        revision=revision or "main",
        commit_url=str(commit.commit_url),
        commit_oid=str(commit.oid),
        files=[op.path_in_repo for op in operations],
        skipped=report.skipped,
    )
