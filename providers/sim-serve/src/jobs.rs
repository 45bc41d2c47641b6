//! ASR jobs, in memory. The estate's state lives in the world file; a job is only the
//! emulator's record of one request, so a restart loses the jobs (then `replicationJobs/{job}`
//! answers 404) while the operations themselves finish in the world.

use std::sync::Mutex;

use lifeboat_engine::provider::{OperationKind, OperationOutcome, ProviderError};
use serde_json::{Value, json};

use crate::render::{self, Vault};

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub kind: OperationKind,
    pub machine: String,
    pub activity_id: String,
    pub start: jiff::Timestamp,
    pub state: JobState,
}

#[derive(Debug, Clone)]
pub enum JobState {
    InProgress,
    Succeeded(jiff::Timestamp),
    Failed(jiff::Timestamp, ProviderError),
}

impl Job {
    pub fn state_name(&self) -> &'static str {
        match self.state {
            JobState::InProgress => "InProgress",
            JobState::Succeeded(_) => "Succeeded",
            JobState::Failed(..) => "Failed",
        }
    }

    fn end(&self) -> Option<jiff::Timestamp> {
        match &self.state {
            JobState::InProgress => None,
            JobState::Succeeded(end) | JobState::Failed(end, _) => Some(*end),
        }
    }

    /// The ASR code of a failed job: the sim's code, which is ASR's where ASR has one.
    pub fn error_code(error: &ProviderError) -> String {
        error
            .code
            .clone()
            .unwrap_or_else(|| "InternalError".to_string())
    }

    /// The job as ASR's `Job` resource.
    pub fn to_json(&self, vault: &Vault) -> Value {
        let scenario = render::scenario(self.kind);
        let mut properties = json!({
            "activityId": self.activity_id,
            "scenarioName": scenario,
            "friendlyName": format!("{scenario} `{}`", self.machine),
            "state": self.state_name(),
            "stateDescription": self.state_name(),
            "tasks": [],
            "errors": [],
            "startTime": self.start.to_string(),
            "allowedActions": [],
            "targetObjectId": vault.item_id(&self.machine),
            "targetObjectName": self.machine,
            "targetInstanceType": "ProtectionEntity",
        });
        if let Some(end) = self.end() {
            properties["endTime"] = json!(end.to_string());
        }
        if let JobState::Failed(end, error) = &self.state {
            properties["errors"] = json!([{
                "serviceErrorDetails": {
                    "code": Self::error_code(error),
                    "message": error.message,
                    "activityId": self.activity_id,
                },
                "errorLevel": "Error",
                "creationTime": end.to_string(),
            }]);
        }
        json!({
            "id": vault.job_id(&self.name),
            "name": self.name,
            "type": "Microsoft.RecoveryServices/vaults/replicationJobs",
            "properties": properties,
        })
    }

    /// The body of the `Azure-AsyncOperation` URL.
    pub fn operation_status(&self, url_path: &str) -> Value {
        let mut body = json!({
            "id": url_path,
            "name": self.name,
            "status": self.state_name(),
            "startTime": self.start.to_string(),
        });
        if let Some(end) = self.end() {
            body["endTime"] = json!(end.to_string());
        }
        if let JobState::Failed(_, error) = &self.state {
            body["error"] = json!({"code": Self::error_code(error), "message": error.message});
        }
        body
    }
}

/// Every job since the start, in the order they were created.
#[derive(Debug, Default)]
pub struct Jobs {
    jobs: Mutex<Vec<Job>>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        // A poisoned lock only means another request panicked mid-update of a plain list;
        // the list is still whole, so go on with it.
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, job: Job) {
        self.lock().push(job);
    }

    pub fn remove(&self, name: &str) {
        self.lock().retain(|job| job.name != name);
    }

    pub fn finish(&self, name: &str, result: &Result<OperationOutcome, ProviderError>) {
        let now = jiff::Timestamp::now();
        if let Some(job) = self.lock().iter_mut().find(|job| job.name == name) {
            job.state = match result {
                Ok(_) => JobState::Succeeded(now),
                Err(error) => JobState::Failed(now, error.clone()),
            };
        }
    }

    pub fn get(&self, name: &str) -> Option<Job> {
        self.lock()
            .iter()
            .find(|job| job.name.eq_ignore_ascii_case(name))
            .cloned()
    }

    pub fn all(&self) -> Vec<Job> {
        self.lock().clone()
    }
}
