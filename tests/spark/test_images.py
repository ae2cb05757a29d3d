from spark.images import IMAGES_PER_TASK, TASKS_PER_CORE, task_count


def test_tasks_follow_the_images_once_the_cores_have_two_each() -> None:
    assert task_count(10_000, cores=2) == 10  # about IMAGES_PER_TASK images each
    assert task_count(IMAGES_PER_TASK + 1, cores=1) == 2
    assert task_count(1_000, cores=16) == TASKS_PER_CORE * 16  # every core busy, twice


def test_an_unknown_count_gives_two_tasks_per_core() -> None:
    assert task_count(None, cores=4) == TASKS_PER_CORE * 4
