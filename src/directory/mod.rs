//! The directory as the platform sees it: the change log of members and departments
//! ([`changelog`]). Reading DingTalk's user and department JSON is in
//! [`crate::dingtalk::records`].

pub mod changelog;
