DROP TABLE logs;
DROP TABLE task_steps;
DROP TABLE tasks;
DROP TABLE templates;
