//! Input rules of the admin resources; every failure is a `bad_request` naming its field.

use frontdesk_core::id::{AgentId, DepartmentId};
use frontdesk_core::pipeline::Failure;
use frontdesk_core::store::{Agent, Department};

pub(crate) const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_CHARS: usize = 1024;
const MAX_NAME_CHARS: usize = 100;
const MAX_EMAIL_CHARS: usize = 254;
pub(crate) const MAX_CHATS: i32 = 100;
const MAX_PRIORITY: i32 = 100;

/// A trimmed email address of a plausible shape (`local@domain`, no spaces).
pub(crate) fn email(field: &str, value: &str) -> Result<String, Failure> {
    let email = value.trim();
    let ok = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if !ok {
        return Err(Failure::bad_request(format!("data.{field}: {email:?} is not an email address")));
    }
    Ok(email.to_string())
}

pub(crate) fn password(field: &str, value: &str) -> Result<(), Failure> {
    let n = value.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(Failure::bad_request(format!(
            "data.{field}: must be at least {MIN_PASSWORD_CHARS} characters (got {n})"
        )));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(Failure::bad_request(format!("data.{field}: must be at most {MAX_PASSWORD_CHARS} characters")));
    }
    Ok(())
}

/// A trimmed, non-empty name of at most 100 characters.
pub(crate) fn name(field: &str, value: &str) -> Result<String, Failure> {
    let name = value.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(Failure::bad_request(format!("data.{field}: must be 1 to {MAX_NAME_CHARS} characters (got {n})")));
    }
    Ok(name.to_string())
}

pub(crate) fn max_chats(value: i32) -> Result<i32, Failure> {
    if !(0..=MAX_CHATS).contains(&value) {
        return Err(Failure::bad_request(format!("data.maxChats: must be between 0 and {MAX_CHATS} (got {value})")));
    }
    Ok(value)
}

pub(crate) fn priority(value: i32) -> Result<i32, Failure> {
    if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&value) {
        return Err(Failure::bad_request(format!(
            "data.priority: must be between -{MAX_PRIORITY} and {MAX_PRIORITY} (got {value})"
        )));
    }
    Ok(value)
}

/// Every id must be a department of the caller's site (`existing`).
pub(crate) fn departments(ids: &[DepartmentId], existing: &[Department]) -> Result<(), Failure> {
    match ids.iter().find(|id| !existing.iter().any(|d| d.id == **id)) {
        Some(id) => Err(Failure::bad_request(format!("data.departments: there is no department {id} in this site"))),
        None => Ok(()),
    }
}

/// Every id must be an agent of the caller's site (`existing`).
pub(crate) fn members(ids: &[AgentId], existing: &[Agent]) -> Result<(), Failure> {
    match ids.iter().find(|id| !existing.iter().any(|a| a.id == **id)) {
        Some(id) => Err(Failure::bad_request(format!("data.members: there is no agent {id} in this site"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_local_part_a_domain_and_no_spaces() {
        assert_eq!(email("email", "  Ann@Example.com ").expect("valid"), "Ann@Example.com");
        for bad in ["", "ann", "@example.com", "ann@", "a nn@example.com"] {
            let e = email("email", bad).expect_err(bad);
            assert!(e.message.starts_with("data.email:"), "{}", e.message);
        }
    }

    #[test]
    fn passwords_names_and_numbers_name_their_field() {
        assert!(password("password", "12345678").is_ok());
        assert!(password("password", "short").expect_err("short").message.contains("at least 8"));
        assert!(name("name", "   ").expect_err("blank").message.starts_with("data.name:"));
        assert!(max_chats(101).expect_err("too many").message.starts_with("data.maxChats:"));
        assert!(priority(-101).is_err());
        assert_eq!(max_chats(0).expect("zero is allowed: an agent who takes no chats"), 0);
    }
}
