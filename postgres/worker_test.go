package postgres

const workerEnv = "CHECKPOINT_PG_WORKER"

func workerMain() int { return 2 }
