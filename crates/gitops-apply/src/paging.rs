//! Paginated lists: every list of the applier, the prune and the health checks reads its
//! collection in pages, so that a namespace of thousands of objects is never one response.

use kube::api::{Api, DynamicObject, ListParams};

/// The page size of lists unless another is given ([`crate::ApplierBuilder::page_size`]).
///
/// ```
/// assert_eq!(gitops_apply::DEFAULT_PAGE_SIZE, 500);
/// ```
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// How often a list starts again when its continue token expired (410 Gone) before it gives up.
const RELISTS: usize = 3;

/// Every object of `api`'s collection matching `params`, read `page_size` at a time (`limit`
/// and `continue`). When the continue token expires between pages (the apiserver answers 410
/// Gone once etcd compacted the revision of the first page), the list starts again from the
/// first page, up to [`RELISTS`] times: the pages of one list then come from one consistent
/// snapshot.
pub(crate) async fn list_all(
    api: &Api<DynamicObject>,
    params: &ListParams,
    page_size: u32,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let mut relists = 0;
    'list: loop {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut page = params.clone().limit(page_size.max(1));
            if let Some(token) = &token {
                page = page.continue_token(token);
            }
            match api.list(&page).await {
                Ok(list) => {
                    items.extend(list.items);
                    match list.metadata.continue_.filter(|t| !t.is_empty()) {
                        Some(next) => token = Some(next),
                        None => return Ok(items),
                    }
                }
                Err(kube::Error::Api(status))
                    if status.code == 410 && token.is_some() && relists < RELISTS =>
                {
                    relists += 1;
                    tracing::debug!(relists, "continue token expired; listing again");
                    continue 'list;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
