//! ECS: the task definition kiln registers, shared by every ECS strategy.

pub mod blue_green;
pub mod code_deploy;
pub mod rolling;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{Tag, TaskDefinition, TaskDefinitionField};
use kiln_api::promotion::ContainerImage;

use kiln_core::running::{self, ReleaseMark, Running, RunningState};

use crate::error::{AwsError, Result, Scope, sdk};
use crate::traffic::PROMOTION_UID_TAG;

/// What to deploy into an ECS service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsService {
    /// The cluster name or ARN.
    pub cluster: String,
    /// The service name or ARN.
    pub service: String,
    /// The container whose image is replaced.
    pub container: String,
    /// The image pinned by digest (`repo@sha256:…`).
    pub image: String,
    /// Other containers whose image the Release sets: (container, image pinned by digest).
    pub sidecars: Vec<(String, String)>,
    /// The Release's mark, tagged on the task definition kiln registers so a later read of the
    /// service knows which version it runs ([`kiln_core::running`]).
    pub mark: Option<ReleaseMark>,
}

impl EcsService {
    /// The Release's images by container: the main one and its sidecars.
    pub(crate) fn images(&self) -> Vec<(&str, &str)> {
        let mut images: Vec<(&str, &str)> = vec![(self.container.as_str(), self.image.as_str())];
        images.extend(self.sidecars.iter().map(|(c, i)| (c.as_str(), i.as_str())));
        images
    }
}

pub(crate) async fn describe_service(
    ecs: &Client,
    scope: &Scope,
    target: &EcsService,
) -> Result<aws_sdk_ecs::types::Service> {
    describe_service_named(ecs, scope, &target.cluster, &target.service).await
}

/// Service `service` of `cluster`, unless it is gone (INACTIVE).
pub(crate) async fn describe_service_named(
    ecs: &Client,
    scope: &Scope,
    cluster: &str,
    service: &str,
) -> Result<aws_sdk_ecs::types::Service> {
    let out = ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .map_err(|e| not_found_or(e, "ECS cluster", cluster, scope))?;
    out.services().iter().find(|s| s.status() != Some("INACTIVE")).cloned().ok_or_else(|| AwsError::NotFound {
        kind: "ECS service",
        name: format!("{service} in cluster {cluster}"),
        scope: scope.clone(),
    })
}

fn not_found_or<E>(
    e: aws_sdk_ecs::error::SdkError<E, aws_sdk_ecs::config::http::HttpResponse>,
    kind: &'static str,
    name: &str,
    scope: &Scope,
) -> AwsError
where
    E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let err = crate::error::from_sdk("ecs", "DescribeServices", e);
    match err.code() {
        Some("ClusterNotFoundException") => AwsError::NotFound { kind, name: name.to_string(), scope: scope.clone() },
        _ => err,
    }
}

/// Task definition `td` (ARN, `family:revision` or family for its latest ACTIVE revision) with
/// its tags.
pub(crate) async fn describe_task_definition(ecs: &Client, td: &str) -> Result<(TaskDefinition, Vec<Tag>)> {
    let out = ecs
        .describe_task_definition()
        .task_definition(td)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(sdk("ecs", "DescribeTaskDefinition"))?;
    let def = out.task_definition().cloned().ok_or(AwsError::Incomplete {
        service: "ecs",
        operation: "DescribeTaskDefinition",
        field: "taskDefinition",
    })?;
    Ok((def, out.tags().to_vec()))
}

/// Whether `tags` mark a resource kiln created for the Promotion with UID `uid`.
pub(crate) fn has_uid(tags: &[Tag], uid: &str) -> bool {
    tags.iter().any(|t| t.key() == Some(PROMOTION_UID_TAG) && t.value() == Some(uid))
}

/// Registers a revision of `current` (a task definition ARN) with only `target.container`'s image
/// replaced by `target.image`, tagged with the Promotion UID. If the family's latest revision is
/// already this Promotion's (a repeat after a crash), returns it instead of registering another.
pub(crate) async fn register_with_image(
    ecs: &Client,
    scope: &Scope,
    current: &str,
    target: &EcsService,
    uid: &str,
) -> Result<String> {
    crate::traffic::require_digest(&target.image, scope)?;
    for (_, image) in &target.sidecars {
        crate::traffic::require_digest(image, scope)?;
    }
    let (def, tags) = describe_task_definition(ecs, current).await?;
    let family = def.family().unwrap_or_default().to_string();
    if !has_uid(&tags, uid) {
        let (latest, latest_tags) = describe_task_definition(ecs, &family).await?;
        if has_uid(&latest_tags, uid)
            && latest
                .container_definitions()
                .iter()
                .any(|c| c.name() == Some(&target.container) && c.image() == Some(&target.image))
            && let Some(arn) = latest.task_definition_arn()
        {
            return Ok(arn.to_string());
        }
    } else if let Some(arn) = def.task_definition_arn() {
        // `current` is already this Promotion's revision.
        return Ok(arn.to_string());
    }
    let images = target.images();
    for (name, _) in &images {
        if !def.container_definitions().iter().any(|c| c.name() == Some(*name)) {
            let names: Vec<&str> = def.container_definitions().iter().filter_map(|c| c.name()).collect();
            return Err(AwsError::Invalid {
                message: format!(
                    "task definition {current} has no container named {name}; its containers are: {}",
                    names.join(", ")
                ),
                scope: scope.clone(),
            });
        }
    }
    let containers = def
        .container_definitions()
        .iter()
        .map(|c| match images.iter().find(|(name, _)| c.name() == Some(*name)) {
            Some((_, image)) => {
                let mut c = c.clone();
                c.image = Some((*image).to_string());
                c
            }
            None => c.clone(),
        })
        .collect::<Vec<_>>();
    // The revision it starts from may carry another Promotion's and Release's marks: replaced.
    let ours = [PROMOTION_UID_TAG, running::SERVICE_TAG, running::VERSION_TAG, running::RELEASE_UID_TAG];
    let mut new_tags: Vec<Tag> = tags.into_iter().filter(|t| !t.key().is_some_and(|k| ours.contains(&k))).collect();
    new_tags.push(Tag::builder().key(PROMOTION_UID_TAG).value(uid).build());
    for (k, v) in target.mark.iter().flat_map(ReleaseMark::tags) {
        new_tags.push(Tag::builder().key(k).value(v).build());
    }
    let out = ecs
        .register_task_definition()
        .family(family)
        .set_container_definitions(Some(containers))
        .set_task_role_arn(def.task_role_arn().map(str::to_string))
        .set_execution_role_arn(def.execution_role_arn().map(str::to_string))
        .set_network_mode(def.network_mode().cloned())
        .set_volumes(Some(def.volumes().to_vec()).filter(|v| !v.is_empty()))
        .set_placement_constraints(Some(def.placement_constraints().to_vec()).filter(|v| !v.is_empty()))
        .set_requires_compatibilities(Some(def.requires_compatibilities().to_vec()).filter(|v| !v.is_empty()))
        .set_cpu(def.cpu().map(str::to_string))
        .set_memory(def.memory().map(str::to_string))
        .set_pid_mode(def.pid_mode().cloned())
        .set_ipc_mode(def.ipc_mode().cloned())
        .set_proxy_configuration(def.proxy_configuration().cloned())
        .set_ephemeral_storage(def.ephemeral_storage().cloned())
        .set_runtime_platform(def.runtime_platform().cloned())
        .set_enable_fault_injection(def.enable_fault_injection())
        .set_tags(Some(new_tags))
        .send()
        .await
        .map_err(sdk("ecs", "RegisterTaskDefinition"))?;
    out.task_definition().and_then(|d| d.task_definition_arn()).map(str::to_string).ok_or(AwsError::Incomplete {
        service: "ecs",
        operation: "RegisterTaskDefinition",
        field: "taskDefinitionArn",
    })
}

/// The containers of task definition `td` and their images (what a snapshot records).
pub(crate) async fn containers(ecs: &Client, td: &str) -> Result<Vec<ContainerImage>> {
    let (def, _) = describe_task_definition(ecs, td).await?;
    Ok(def
        .container_definitions()
        .iter()
        .map(|c| ContainerImage {
            name: c.name().unwrap_or_default().to_string(),
            image: c.image().unwrap_or_default().to_string(),
        })
        .collect())
}

/// What ECS service `target` runs when it serves task definition `serving` (None: none at all):
/// kiln's mark from the task definition's tags, and whether every container the Release sets
/// already runs the Release's image.
pub(crate) async fn running(ecs: &Client, target: &EcsService, serving: Option<&str>) -> Result<RunningState> {
    let Some(td) = serving else {
        return Ok(RunningState::Unknown(format!(
            "ECS service {} in cluster {} serves no task definition",
            target.service, target.cluster
        )));
    };
    let (def, tags) = describe_task_definition(ecs, td).await?;
    let image_of = |name: &str| {
        def.container_definitions().iter().find(|c| c.name() == Some(name)).and_then(|c| c.image()).unwrap_or_default()
    };
    let same_artifacts = target.images().iter().all(|(name, image)| image_of(name) == *image);
    let revision = match (def.family(), def.revision()) {
        (Some(f), r) if r > 0 => format!("{f}:{r}"),
        _ => td.to_string(),
    };
    Ok(RunningState::Runs(Running {
        what: format!("ECS service {} in cluster {} (task definition {revision})", target.service, target.cluster),
        mark: ReleaseMark::from_tags(tags.iter().filter_map(|t| t.key().zip(t.value()))),
        same_artifacts,
        artifact: image_of(&target.container).to_string(),
    }))
}

/// The image of `container` in task definition `td`.
pub async fn container_image(ecs: &Client, td: &str, container: &str) -> Result<Option<String>> {
    let (def, _) = describe_task_definition(ecs, td).await?;
    Ok(def
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
        .and_then(|c| c.image())
        .map(str::to_string))
}
