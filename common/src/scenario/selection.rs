//! Narrowing a validated plan from the command line: the classes named on it and the
//! tasks `--tags` / `--exclude-tags` keep.

use crate::plan::RunPlan;

/// Keeps the tasks whose tags match `--tags` (any of them; none given = all) and none
/// of `--exclude-tags`. A class left without tasks is an error naming it.
pub fn filter_tags(plan: &mut RunPlan, tags: &[String], exclude: &[String]) -> Result<(), String> {
    if tags.is_empty() && exclude.is_empty() {
        return Ok(());
    }
    for class in &mut plan.classes {
        class.tasks.retain(|t| {
            (tags.is_empty() || t.tags.iter().any(|g| tags.contains(g))) && !t.tags.iter().any(|g| exclude.contains(g))
        });
        if class.tasks.is_empty() {
            return Err(format!(
                "user class `{}` has no task left after --tags {:?} / --exclude-tags {:?}",
                class.name, tags, exclude
            ));
        }
    }
    Ok(())
}

/// Keeps the user classes named on the command line (Locust's positional class names;
/// none given = all). An unknown name is an error listing the classes there are.
pub fn select_classes(plan: &mut RunPlan, names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    if let Some(unknown) = names.iter().find(|n| !plan.classes.iter().any(|c| &c.name == *n)) {
        let known: Vec<&str> = plan.classes.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "no user class `{unknown}` in {}; it has {}",
            plan.source,
            known.join(", ")
        ));
    }
    plan.classes.retain(|c| names.contains(&c.name));
    if plan.classes.iter().all(|c| c.weight == 0 && c.fixed_count.is_none()) {
        return Err(format!(
            "the user classes {} all have weight 0: no user would run",
            names.join(", ")
        ));
    }
    Ok(())
}
